/* The run-time version, to compare with the AD_VERSION_* macros a program was compiled with. */
#include "internal.h"

const char *ad_version(void) { return AD_VERSION_STRING; }
int ad_version_number(void) { return AD_VERSION_MAJOR * 10000 + AD_VERSION_MINOR * 100 + AD_VERSION_PATCH; }
