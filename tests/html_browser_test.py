#!/usr/bin/env python3
"""The HTML stepper in a real browser: headless Chromium loads the lecture's neuron page at
#step=N for every step and dumps the DOM after the page's script ran; at each step the panel
must show the slide's numbers, and the picture must show exactly the labels reached so far with
the step's node highlighted.

    html_browser_test.py BACKPROP_BINARY [CHROMIUM]

Exits 77 (meson's SKIP) when no Chromium is installed (Debian: apt-get install chromium).
Standard library only."""
import concurrent.futures
import html.parser
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import time

SKIP = 77
NEURON = ["1/(1+exp(-(w0*x0+w1*x1+w2)))", "x0=-1", "x1=-2", "w0=2", "w1=-3", "w2=-3"]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--mute-audio", "--window-size=1400,800"]

# What the panel says at each step of the neuron (two decimals, as the traces print): the
# forward values, then the slides' backward steps, "Upstream gradient ... Local gradient ...
# Downstream gradient", and the gradient in the slides' argument order.
NEURON_STEPS = {
    0: ["The graph", "Forward pass (steps 1–13)", "Backward pass (steps 14–23)"],
    1: ["x0 = -1.00"], 2: ["x1 = -2.00"], 3: ["w0 = 2.00"], 4: ["w1 = -3.00"], 5: ["w2 = -3.00"],
    6: ["#5 = w0 · x0 = 2.00 · (-1.00) = -2.00"],
    7: ["#6 = w1 · x1 = (-3.00) · (-2.00) = 6.00"],
    8: ["#7 = #5 + #6 = (-2.00) + 6.00 = 4.00"],
    9: ["#8 = #7 + w2 = 4.00 + (-3.00) = 1.00"],
    10: ["#9 = -#8 = -(1.00) = -1.00"],
    11: ["#10 = exp(#9) = exp(-1.00) = 0.37"],
    12: ["#12 = 1 + #10 = 1 + 0.37 = 1.37"],
    13: ["#13 = 1/#12 = 1/1.37 = 0.73"],
    14: ["Base case: df/df = 1"],
    15: ["gate 1/x", "Upstream gradient: 1.00", "Evaluated at: u = #12 = 1.37",
         "Local gradient: ∂/∂u [1/u] = -1/u^2 = -1/1.37^2 = -0.53",
         "Downstream gradient: (-0.53) · 1.00 = -0.53 → #12"],
    16: ["gate +1", "Upstream gradient: -0.53", "Local gradient: ∂/∂u [u + 1] = 1",
         "Downstream gradient: 1 · (-0.53) = -0.53 → #10"],
    17: ["gate exp", "Upstream gradient: -0.53", "Evaluated at: u = #9 = -1.00",
         "Local gradient: ∂/∂u [exp(u)] = exp(u) = exp(-1.00) = 0.37",
         "Downstream gradient: 0.37 · (-0.53) = -0.20 → #9"],
    18: ["gate neg", "Upstream gradient: -0.20", "Local gradient: ∂/∂u [-u] = -1",
         "Downstream gradient: (-1) · (-0.20) = 0.20 → #8"],
    19: ["gate + (#8)", "Upstream gradient: 0.20", "Local gradient: ∂/∂u [u + w2] = 1, ∂/∂w2 [u + w2] = 1",
         "Downstream gradients: 1 · 0.20 = 0.20 → #7, 1 · 0.20 = 0.20 → w2"],
    20: ["gate + (#7)", "Upstream gradient: 0.20",
         "Downstream gradients: 1 · 0.20 = 0.20 → #5, 1 · 0.20 = 0.20 → #6"],
    21: ["gate * (#6)", "Upstream gradient: 0.20",
         "Local gradient: ∂/∂w1 [w1·x1] = x1 = -2.00, ∂/∂x1 [w1·x1] = w1 = -3.00",
         "Downstream gradients: (-2.00) · 0.20 = -0.39 → w1, (-3.00) · 0.20 = -0.59 → x1"],
    22: ["gate * (#5)", "Upstream gradient: 0.20",
         "Local gradient: ∂/∂w0 [w0·x0] = x0 = -1.00, ∂/∂x0 [w0·x0] = w0 = 2.00",
         "Downstream gradients: (-1.00) · 0.20 = -0.20 → w0, 2.00 · 0.20 = 0.39 → x0"],
    23: ["∇f(x0, x1, w0, w1, w2) = (0.39, -0.59, -0.20, -0.39, 0.20)", "ordering of the arguments"],
}
# The slides print one decimal: --digits 1 gives their very numbers.
ONE_DECIMAL = {
    17: ["0.4 · (-0.5) = -0.2 → #9"],
    18: ["(-1) · (-0.2) = 0.2 → #8"],
    21: ["(-2.0) · 0.2 = -0.4 → w1, (-3.0) · 0.2 = -0.6 → x1"],
    22: ["(-1.0) · 0.2 = -0.2 → w0, 2.0 · 0.2 = 0.4 → x0"],
    23: ["∇f(x0, x1, w0, w1, w2) = (0.4, -0.6, -0.2, -0.4, 0.2)"],
}
# Issue 18: a one-hidden-layer network on one example, its tensors as grids.  Each entry: the
# panel's words, and how many value and gradient grids the panel shows.
NETWORK = ["sum(tanh(W1@x + b1) * w2)", "W1=[[1,2],[-1,0.5],[0.3,-2]]", "x=[1,-1]", "b1=[0.1,0.2,0.3]",
           "w2=[1,-1,2]"]
NETWORK_STEPS = {
    1: (["W1 = [3,2]", "value [3,2]"], 1, 0),
    6: (["#5 = matmul(W1, #4)", "value [3,1]"], 3, 0),
    18: (["In matrix form: matmul [3,2]@[2,1]: downstream dW1 = upstream · #4ᵀ [3,2]; d#4 = W1ᵀ · upstream [2,1]",
          "gradient [3,2]"], 3, 3),
    20: (["df/dW1", "gradient [3,2]"], 4, 4),
}
COPY_STEPS = {
    1: ["x = 3.00 (used 3 times"],
    7: ["the copy node of x", "copy of x: 1.00 + 3.00 + 3.00 = 7.00"],
    8: ["∇f(x) = (7.00)", "df/dx = 7.00"],
}


class Page(html.parser.HTMLParser):
    """What a student sees: the panel's text, the step's list item, the highlighted part and
    which picture labels are hidden."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.panel, self.panel_step, self.depth = [], None, 0
        self.li_parts, self.cur = [], []
        self.labels = []  # (data-step, hidden?)
        self.grids = {"v": 0, "g": 0}  # the panel's value and gradient grids

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        if self.depth:
            self.depth += tag not in ("br", "img", "input", "meta")
        elif a.get("id") == "panel":
            self.depth, self.panel_step = 1, a.get("data-step")
        if self.depth and tag == "table" and "grid" in cls:
            self.grids["g" if "g" in cls else "v"] += 1
        if tag == "li" and "data-part" in a:
            self.li_parts.append(a["data-part"])
        if "cur" in cls:
            self.cur.append(a.get("id"))
        if tag == "text" and "data-step" in a:
            self.labels.append((int(a["data-step"]), "later" in cls))

    def handle_endtag(self, tag):
        if self.depth:
            self.depth -= 1
            if tag == "p":
                self.panel.append(" ")  # the panel's lines read apart in messages

    def handle_data(self, data):
        if self.depth:
            self.panel.append(data)

    def text(self):
        return " ".join("".join(self.panel).split())


def dump_dom(chromium, url, profile):
    r = subprocess.run([chromium, *FLAGS, "--user-data-dir=" + profile, "--dump-dom", url],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0 or "</html>" not in r.stdout:
        raise RuntimeError("chromium failed on %s (exit %d): %s" % (url, r.returncode, r.stderr[-500:]))
    p = Page()
    p.feed(r.stdout)
    return p


def check_step(page, step, want, last, grids=None):
    """Problems with one loaded step, as strings (none when it is right)."""
    bad = []
    text = page.text()
    if grids and (page.grids["v"], page.grids["g"]) != grids:
        bad.append("step %d: the panel shows %d value and %d gradient grids, want %d and %d"
                   % (step, page.grids["v"], page.grids["g"], *grids))
    for w in want:
        if w not in text:
            bad.append("step %d: panel lacks %r; it says %r" % (step, w, text))
    if page.panel_step != str(min(step, last)):
        bad.append("step %d: panel shows step %s" % (step, page.panel_step))
    s = min(step, last)
    for at, hidden in page.labels:
        if hidden != (at > s):
            bad.append("step %d: a label of step %d is %s" % (step, at, "hidden" if hidden else "shown"))
            break
    part = page.li_parts[s] if s < len(page.li_parts) else ""
    if len(page.li_parts) != last + 1:
        bad.append("step %d: the page has %d steps, want %d" % (step, len(page.li_parts), last + 1))
    if part and page.cur != [part]:
        bad.append("step %d: highlighted %s, want %s" % (step, page.cur, part))
    return bad


def main():
    if len(sys.argv) < 2:
        print("usage: html_browser_test.py BACKPROP_BINARY [CHROMIUM]", file=sys.stderr)
        return 2
    backprop = sys.argv[1]
    chromium = sys.argv[2] if len(sys.argv) > 2 else next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
    if not chromium or not os.path.exists(chromium):
        print("SKIP: no chromium installed (Debian: apt-get install chromium)")
        return SKIP
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        pages = {}
        for name, digits, args in (("neuron", "2", NEURON), ("neuron1", "1", NEURON), ("copy", "2", ["x*x + x", "x=3"]),
                                     ("network", "2", NETWORK)):
            path = os.path.join(tmp, name + ".html")
            with open(path, "w") as f:
                subprocess.run([backprop, "--digits", digits, "--html", *args], stdout=f, check=True)
            size = os.path.getsize(path)
            if size >= 200 * 1024:
                print("FAIL: %s page is %d bytes, over 200 KB" % (name, size))
                return 1
            pages[name] = path
        jobs = [("neuron", s, w, 23) for s, w in NEURON_STEPS.items()]
        jobs += [("neuron1", s, w, 23) for s, w in ONE_DECIMAL.items()]
        jobs += [("copy", s, w, 8) for s, w in COPY_STEPS.items()]
        jobs += [("network", s, w, 20, g) for s, (w, *g) in NETWORK_STEPS.items()]
        # past the end clamps to the last step; no fragment is step 0
        jobs += [("neuron", 99, NEURON_STEPS[23], 23), ("copy", None, ["3 nodes"], 8)]

        # a profile folder per browser running at once: Chromium locks its profile
        workers = min(4, os.cpu_count() or 1)
        profiles = queue.Queue()
        for i in range(workers):
            profiles.put(os.path.join(tmp, "profile%d" % i))

        def run(job):
            name, step, want, last, *grids = job
            url = "file://" + pages[name] + ("" if step is None else "#step=%d" % step)
            profile = profiles.get()
            try:
                page = dump_dom(chromium, url, profile)
            finally:
                profiles.put(profile)
            return check_step(page, 0 if step is None else step, want, last, tuple(grids[0]) if grids else None)

        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(run, jobs))
    failed = [bad for bad in results if bad]
    for bad in failed:
        for line in bad:
            print("FAIL:", line)
    print("stepper pages loaded in Chromium at %d steps in %.1f s" % (len(jobs), time.time() - start))
    print("%d passed, %d failed" % (len(jobs) - len(failed), len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
