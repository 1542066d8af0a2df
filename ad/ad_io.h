/*
 * ad_io.h — saving and loading tensors in the safetensors format, and the small pieces of
 * file and text handling that the library's modules and the demos share (error messages,
 * XML text, atomic file writes).
 *
 * Tutorial.  Save named tensors with a few metadata strings, load them back by name:
 *
 *     char err[256];
 *     const char *names[] = {"w", "b"}, *meta[] = {"author", "me"};
 *     ad_tensor *ts[] = {w, b};
 *     if (ad_safetensors_save("m.safetensors", 2, names, ts, 1, meta, err, sizeof err))
 *         fprintf(stderr, "%s\n", err);
 *     ad_tensor_file *f = ad_safetensors_load("m.safetensors", err, sizeof err);
 *     if (!f) fprintf(stderr, "%s\n", err);
 *     ad_tensor *w2 = ad_tensor_file_find(f, "w");            // owned by f
 *     printf("%s\n", ad_tensor_file_meta(f, "author"));      // me
 *     ad_tensor_file_free(f);
 *
 * Format.  Hugging Face's safetensors: an 8-byte little-endian header length N, N bytes of
 * JSON ({"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
 * "__metadata__": {"key": "value"}}), padded with spaces to a multiple of 8, then the raw
 * little-endian data; offsets count from the end of the header.  Files written here load in
 * Python's safetensors, and files it writes load here when their dtypes are F32 or F64.
 *
 * Ownership.  The caller keeps the tensors it saves.  Loaded tensors, names and metadata
 * belong to the ad_tensor_file and die with ad_tensor_file_free.
 *
 * Errors.  Functions return a status or NULL and write a message into err (errlen bytes,
 * truncated; err may be NULL) that names the function, the file and the problem, with the
 * line and column for a fault in the JSON header.  Nothing aborts or prints.  Loading checks
 * everything it reads, so a truncated or corrupted file gives an error, never a crash.
 */
#ifndef AD_IO_H
#define AD_IO_H

#include "ad.h"
#include <stdarg.h>

AD_BEGIN_DECLS

/* Writes n tensors under the given names (unique, non-empty UTF-8, not "__metadata__") and
 * nmeta key/value string pairs (meta holds key0, value0, key1, value1, ...; may be NULL when
 * nmeta is 0) into a safetensors file at path.  The write is atomic: the bytes go to a
 * temporary file in the same folder, which is flushed, synced and renamed over path, so a
 * crash or an error leaves either the old file or the new one, never a mix; on failure the
 * temporary file is removed.  A replaced file's permission bits are kept; a new file gets
 * 0666 minus the umask.  Returns AD_OK, or AD_ERR_NULL, AD_ERR_ARG (bad names or counts),
 * AD_ERR_NOMEM or AD_ERR_IO (naming the step that failed) with the message in err. */
ad_status ad_safetensors_save(const char *path, int n, const char *const *names,
                              ad_tensor *const *tensors, int nmeta, const char *const *meta,
                              char *err, size_t errlen);

/* The tensors and metadata read from one file. */
typedef struct ad_tensor_file ad_tensor_file;

/* Reads a safetensors file: every tensor (F32 or F64, and I64, such as PyTorch's
 * num_batches_tracked, as float64; other dtypes are refused with a message naming them) into
 * a new tensor, and the metadata.  Checks the header length (at most the
 * file size minus 8, and 100 MB), the JSON syntax, the dtypes, the shapes (rank <= 6, element
 * counts that do not overflow), names (unique), and that the data offsets lie inside the file,
 * match each tensor's size and cover the data section without gaps or overlaps.  NULL and a
 * message in err on any problem. */
ad_tensor_file *ad_safetensors_load(const char *path, char *err, size_t errlen);

/* Number of tensors in the file (0 for NULL). */
int ad_tensor_file_count(const ad_tensor_file *f);

/* Name of tensor i, in the order of the file's header; NULL if i is out of range. */
const char *ad_tensor_file_name(const ad_tensor_file *f, int i);

/* Tensor i (owned by f); NULL if i is out of range. */
ad_tensor *ad_tensor_file_tensor(const ad_tensor_file *f, int i);

/* The tensor called name (owned by f), or NULL if there is none. */
ad_tensor *ad_tensor_file_find(const ad_tensor_file *f, const char *name);

/* The metadata value stored under key, or NULL if there is none. */
const char *ad_tensor_file_meta(const ad_tensor_file *f, const char *key);

/* Number of metadata pairs in the file (0 for NULL). */
int ad_tensor_file_meta_count(const ad_tensor_file *f);

/* The key of metadata pair i (pairs sorted by key), or NULL if i is out of range; its value is
 * ad_tensor_file_meta(f, key). */
const char *ad_tensor_file_meta_key(const ad_tensor_file *f, int i);

/* Frees the file's tensors, names and metadata; NULL is ignored. */
void ad_tensor_file_free(ad_tensor_file *f);

/* ------------------------------------------------------------------------------------------
 * Shared helpers: one implementation of each, used by ad, nn, optim and the demos.
 */

/* Writes a printf-style message into err (errlen bytes, truncated, always NUL-terminated;
 * nothing is written when err is NULL or errlen is 0).  When failed is not NULL the first error
 * wins: nothing is written if *failed is already true, and *failed becomes true, so a parser
 * reports the fault it met first rather than its consequences. */
void ad_errorf(char *err, size_t errlen, bool *failed, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* ad_errorf for functions that take their own variable arguments: the message is prefix (a
 * plain string such as "nn_csv_load: data.csv: line 3: "; NULL for none) followed by fmt
 * formatted with ap.  Truncation cuts the end of the message, never the prefix's start. */
void ad_verrorf(char *err, size_t errlen, bool *failed, const char *prefix, const char *fmt,
                va_list ap);

/* Escapes s for XML or HTML text and attribute values: & < > " become entities, control
 * characters other than tab, which XML forbids, become '?', and bytes that are not UTF-8 (and
 * U+FFFE, U+FFFF) become U+FFFD, so any name gives well-formed XML.  Writes at most dstlen
 * bytes into dst, NUL included (dst may be NULL when dstlen is 0), and returns the length of
 * the whole escaped text, like snprintf, so a caller can size its buffer with a first call. */
size_t ad_xml_escape(char *dst, size_t dstlen, const char *s);

/* Opens path for reading ("rb") if it is a regular file.  The open does not block (a FIFO
 * without a writer would otherwise hang the caller forever) and the type is checked on the
 * opened descriptor, so the file cannot be swapped between a check and the open.  On failure
 * returns NULL with errno set and a reason without the path in why (whylen bytes): "cannot
 * open: REASON" or "not a regular file (a FIFO)" (a directory, a device, a socket...). */
FILE *ad_fopen_regular(const char *path, char *why, size_t whylen);

/* Writes the file at path atomically: a temporary file .NAME.tmp-XXXXXX is created in the same
 * folder, filled by fill(f, ctx) (which returns false if a write failed), flushed, synced and
 * renamed over path, so a crash or an error leaves either the old file or the new one, never a
 * mix; on failure the temporary file is removed, and the temporary files a killed save left
 * for the same target are removed by the next save to it.  A symbolic link is followed, as
 * editors do: its target is replaced (or created) and the link stays.  A target that exists
 * and is not a regular file (a FIFO, a device, a folder...) is refused.  A replaced file keeps
 * its permission bits; a new file gets 0666 minus the umask.  Returns AD_OK, AD_ERR_NULL,
 * AD_ERR_NOMEM, or AD_ERR_IO with errno set to the cause and a message in err: "PATH: not a
 * regular file (a FIFO): refusing to replace it", "PATH: cannot create a temporary file next
 * to it: REASON" or "PATH: STEP failed: REASON (the old file, if any, is untouched)". */
ad_status ad_write_atomic(const char *path, bool (*fill)(FILE *f, void *ctx), void *ctx, char *err,
                          size_t errlen);

AD_END_DECLS
#endif
