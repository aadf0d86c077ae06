"""The helpers of bench/run_peers.py: finding the tools, running them with the environment each
gets (threads, OpenBLAS kernels), the thread calibration, and the report's pieces. Standard
library only, like run_peers.py."""

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import time

import tuning

PEERS = os.path.dirname(os.path.abspath(__file__))
HERE = os.path.dirname(PEERS)  # bench/
ROOT = os.path.dirname(HERE)
JAX_VENV = os.path.join(HERE, ".venv-jax")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def find_cuvae(given):
    """--cuvae, else $CUVAE_BINARY, else build/cuvae (a sanitizer or debug build would time
    something else, so other build directories are not searched)."""
    for c in (given, os.environ.get("CUVAE_BINARY"), os.path.join(ROOT, "build", "cuvae")):
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return os.path.abspath(c)
    raise SystemExit("run_peers: no cuvae binary: build it (cmake -S . -B build && cmake --build "
                     "build) or pass --cuvae PATH")


def python_with(module, given, extra=()):
    """A Python interpreter that imports `module`: --python/--jax-python, then /usr/bin/python3
    (Debian's python3-torch), this interpreter, python3 on PATH, then `extra`."""
    cands = [given] if given else ["/usr/bin/python3", sys.executable, shutil.which("python3")]
    for c in cands + ([] if given else list(extra)):
        if not c or not os.path.exists(c):
            continue
        try:
            r = subprocess.run([c, "-c", "import %s" % module], capture_output=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if r.returncode == 0:
            return c
    return None


def jax_python(args, device):
    """A Python that imports jax; when there is none, makes bench/.venv-jax with JAX (CPU) from
    PyPI, unless --no-install, --jax-python, or CUDA (a GPU machine has no network here; JAX for
    CUDA needs its jax[cuda12] wheels brought along)."""
    venv_py = os.path.join(JAX_VENV, "bin", "python")
    py = python_with("jax", args.jax_python, [venv_py])
    if py or args.jax_python or args.no_install or device != "cpu":
        return py
    base = python_with("ensurepip", None)  # what `python3 -m venv` needs (Debian: python3-venv)
    if not base:
        log("run_peers: note: no Python here can make a virtual environment (Debian: apt-get "
            "install python3-venv); the JAX peer is left out")
        return None
    log("run_peers: no Python imports jax: installing JAX (CPU) from PyPI into %s with pip, "
        "once (about 100 MB; a minute or two; --no-install leaves JAX out)"
        % os.path.relpath(JAX_VENV, ROOT))
    try:
        if not os.path.exists(venv_py):
            subprocess.run([base, "-m", "venv", JAX_VENV], check=True)
        subprocess.run([venv_py, "-m", "pip", "install", "--disable-pip-version-check",
                        "--progress-bar", "off", "jax"], check=True, stdout=sys.stderr)
    except (OSError, subprocess.CalledProcessError) as e:
        log("run_peers: note: installing JAX failed (%s); the JAX peer is left out" % e)
        return None
    return python_with("jax", venv_py)


def run(cmd, env, what):
    log("+ " + " ".join(cmd))
    t0 = time.time()
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        log(r.stdout[-3000:])
        log(r.stderr[-3000:])
        raise SystemExit("run_peers: %s failed (exit %d): %s" % (what, r.returncode, " ".join(cmd)))
    log("  (%.1f s)" % (time.time() - t0))
    return r


def run_json(cmd, env, what, tmp, tag):
    """Runs cmd + ["--json", file] and returns the parsed file."""
    out = os.path.join(tmp, "%s.json" % tag)
    run(cmd + ["--json", out], env, what)
    with open(out) as f:
        return json.load(f)


def thread_env(threads, base=None, drop=(), extra=None):
    """The environment of a tool: threads for OpenBLAS and OpenMP (0: the tool's default), the
    variables in `drop` removed, `extra` added."""
    env = dict(os.environ if base is None else base)
    for k in drop:
        env.pop(k, None)
    if threads:
        env["OPENBLAS_NUM_THREADS"] = str(threads)
        env["OMP_NUM_THREADS"] = str(threads)
    env.update(extra or {})
    return env


def pick_device(args, torch_py):
    if args.device != "auto":
        return args.device
    if torch_py:
        r = subprocess.run([torch_py, "-c", "import torch; print(torch.cuda.is_available())"],
                           capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip() == "True":
            return "cuda"
    return "cpu"


def gpu_name(torch_py):
    if torch_py:
        r = subprocess.run([torch_py, "-c", "import torch; print(torch.cuda.get_device_name(0))"],
                           capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout.strip()
    return "unknown GPU"


# ---- the BLAS kernels and thread counts of the tools ------------------------------------------

def torch_blas_env(torch_py):
    """(variables to add to the PyTorch peers' environment, how they were chosen): cuvae's
    kernel correction for the OpenBLAS that torch loads, found by asking it without the
    variable (the same library cuvae links on Debian)."""
    user = os.environ.get("OPENBLAS_CORETYPE")
    level = tuning.cpu_level(tuning.cpu_flags())
    picked = None
    if not user:
        probe = ("import json, sys; sys.path.insert(0, %r); import torch, tuning; "
                 "print(json.dumps(tuning.openblas_in_process()))" % PEERS)
        env = dict(os.environ)
        env.pop("OPENBLAS_CORETYPE", None)
        r = subprocess.run([torch_py, "-c", probe], capture_output=True, text=True, env=env)
        info = json.loads(r.stdout) if r.returncode == 0 and r.stdout.strip() else None
        if info is None:
            return {}, "torch loads no OpenBLAS: nothing to correct"
        picked = info["kernels"]
    coretype, why = tuning.decide_coretype(level, picked, user)
    return ({"OPENBLAS_CORETYPE": coretype} if coretype else {}), why


def calibrate(name, measure, candidates, fixed):
    """({key: threads}, {threads: {key: rate}}): `fixed` for every key when given, else the
    fastest of `candidates` by measure(threads) -> {key: rate}."""
    if fixed:
        return None, {}
    table = {}
    for t in candidates:
        log("run_peers: calibrating %s at %d thread%s" % (name, t, "" if t == 1 else "s"))
        table[t] = measure(t)
    return tuning.best_threads(table), table


def chosen(choice, fixed, key):
    return fixed if fixed else choice.get(key)


def tool_threads(args, name):
    """The thread count given for a tool on the command line, or None (calibrate)."""
    if args.threads:
        return args.threads
    return args.cuvae_threads if name == "cuvae" else args.peer_threads


def settings_rates(doc, precision, fastest=False):
    """{batch: samples/s} of a tool's JSON; fastest: from its fastest timed repeat (the
    calibration's figure: another process slowing one repeat should not decide the count)."""
    out = {}
    for s in doc.get("settings", []):
        if s.get("precision") == precision and s.get("status") == "ok":
            reps = s.get("repeat_step_ms") if fastest else None
            out[s["batch"]] = s["batch"] * 1e3 / min(reps) if reps else s["samples_per_s"]
    return out


def blas_of(name, doc, torch_why):
    """What computed a tool's GEMMs, from its own JSON."""
    if name == "cuvae":
        b = (doc.get("machine") or {}).get("blas")
        b = dict(b) if isinstance(b, dict) else {"kernels": b}
        if "kernels_source" in b:
            b["source"] = b.pop("kernels_source")
        return b
    if name == "jax":
        return {"library": "jaxlib", "version": doc.get("jaxlib_version", "?"),
                "kernels": "XLA's own", "source": "no OpenBLAS"}
    b = dict(doc.get("blas") or {"library": "none found"})
    b["source"] = torch_why
    return b


def cuvae_blas(cuvae, env):
    """cuvae's BLAS line (`cuvae --version`) under `env`, as blas_of's dict."""
    r = subprocess.run([cuvae, "--version"], capture_output=True, text=True, env=env)
    m = re.search(r"^BLAS: (\S+) (\S+), kernels (\S+) \((.*)\), (\d+) threads?$", r.stdout, re.M)
    if not m:
        return {"library": "unknown", "source": r.stdout.strip()[-200:]}
    return {"library": m.group(1), "version": m.group(2), "kernels": m.group(3),
            "source": m.group(4), "threads": int(m.group(5))}


def blas_text(b):
    if not b:
        return "-"
    return "%s %s, kernels %s%s" % (b.get("library", ""), b.get("version", ""),
                                    b.get("kernels", "?"),
                                    " (%s)" % b["source"] if b.get("source") else "")


def fmt(v):
    return "-" if v is None else "%.0f" % v


def at(v, threads):
    return fmt(v) + ("@%d" % threads if threads and v is not None else "")


def config_batch(config, overrides):
    """train.batch_size of a cuvae INI file with its overrides (default 128)."""
    cp = configparser.ConfigParser(inline_comment_prefixes=(";", "#"), interpolation=None,
                                   strict=False)
    cp.read(config)
    value = cp.get("train", "batch_size", fallback="128")
    for ov in overrides:
        key, _, v = ov.partition("=")
        if key.strip() == "train.batch_size":
            value = v
    return int(value.strip().strip('"'))
