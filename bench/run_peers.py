#!/usr/bin/env python3
"""One driver for cuvae's speed comparison: on the current machine it runs `cuvae bench` and every
peer that is available with the same config, batch sizes, precisions, step counts and thread
count, in the same session, and prints samples/s with the ratio cuvae/peer (above 1: cuvae is
faster), plus JSON with the machine, the date and every command.

Peers: on CUDA, PyTorch eager, torch.compile (default and max-autotune), a manually captured CUDA
graph of the whole step, and JAX jit (when jax imports); on the CPU, PyTorch eager and JAX jit
(when jax imports). With --rounds R the whole sequence runs R times, interleaved, and the median
of each figure is reported, which evens out a machine whose speed drifts.

--epoch E instead trains the real data for E epochs with `cuvae train` and with
bench/peers/torch_vae.py --train-epochs E on the same device, and prints both epoch times and
test negative ELBOs (E = 1 is the README's epoch-time figure; E = 10 is the "within 1% of
PyTorch" check).

Only the standard library is needed here; the peers run under a Python that imports torch (and,
for JAX, one that imports jax), found automatically or given with --python / --jax-python."""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers"))
from report import cpu_model  # noqa: E402 (standard library only)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEERS = os.path.join(HERE, "peers")


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


def python_with(module, given):
    """A Python interpreter that imports `module`: --python/--jax-python, then /usr/bin/python3
    (Debian's python3-torch), this interpreter, python3 on PATH."""
    cands = [given] if given else ["/usr/bin/python3", sys.executable, shutil.which("python3")]
    for c in cands:
        if not c:
            continue
        try:
            r = subprocess.run([c, "-c", "import %s" % module], capture_output=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if r.returncode == 0:
            return c
    return None


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


def thread_env(threads):
    env = dict(os.environ)
    if threads:
        env["OPENBLAS_NUM_THREADS"] = str(threads)
        env["OMP_NUM_THREADS"] = str(threads)
        if threads == 1:
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                                " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
                                ).strip()
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


# ---- throughput -------------------------------------------------------------------------------

def bench(args):
    cuvae = find_cuvae(args.cuvae)
    torch_py = python_with("torch", args.python)
    jax_py = python_with("jax", args.jax_python)
    device = pick_device(args, torch_py)
    precisions = args.precision or ("fp32" if device == "cpu" else "fp32,tf32,bf16")
    threads = args.threads if args.threads is not None else (os.cpu_count() if device == "cpu"
                                                             else 0)
    env = thread_env(threads if device == "cpu" else 0)
    common = ["--batch", args.batch, "--precision", precisions, "--steps", str(args.steps),
              "--warmup", str(args.warmup), "--repeats", str(args.repeats)]
    cfg = [args.config] if args.config else []
    cfg += args.overrides

    peers = []  # (name, command builder)
    wanted = set(args.peers.split(",")) if args.peers else None
    if torch_py:
        modes = ["eager"] if device == "cpu" else ["eager", "compile", "compile-max", "graph"]
        for mode in modes:
            name = "torch-" + mode
            if wanted is None or name in wanted:
                extra = ["--threads", str(threads)] if device == "cpu" and threads else []
                peers.append((name, [torch_py, os.path.join(PEERS, "torch_vae.py")] + cfg +
                              ["--device", device, "--mode", mode] + common + extra))
    else:
        log("run_peers: note: no Python imports torch; the PyTorch peers are left out")
    if jax_py and (wanted is None or "jax" in wanted):
        peers.append(("jax", [jax_py, os.path.join(PEERS, "jax_vae.py")] + cfg +
                      ["--device", device] + common))
    elif not jax_py:
        log("run_peers: note: no Python imports jax; the JAX peer is left out")

    tmp = tempfile.mkdtemp(prefix="cuvae_peers_")
    runs = {"cuvae": []}
    for name, _ in peers:
        runs[name] = []
    commands = {}
    try:
        for r in range(args.rounds):
            out = os.path.join(tmp, "cuvae-%d.json" % r)
            cmd = [cuvae, "bench"] + cfg + ["--device", device] + common + \
                ["--eval-samples", str(args.eval_samples), "--json", out]
            commands["cuvae"] = " ".join(cmd)
            run(cmd, env, "cuvae bench")
            runs["cuvae"].append(json.load(open(out)))
            for name, base in peers:
                out = os.path.join(tmp, "%s-%d.json" % (name, r))
                cmd = base + ["--json", out]
                commands[name] = " ".join(cmd)
                run(cmd, env, name)
                runs[name].append(json.load(open(out)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def figure(tool, batch, precision):
        vals = []
        for doc in runs[tool]:
            for s in doc["settings"]:
                if s["batch"] == batch and s["precision"] == precision and s.get("status") == "ok":
                    vals.append(s["samples_per_s"])
        return statistics.median(vals) if vals else None

    batches = [int(b) for b in args.batch.split(",")]
    table = []
    for p in precisions.split(","):
        for b in batches:
            row = {"batch": b, "precision": p, "cuvae": figure("cuvae", b, p), "peers": {}}
            for name, _ in peers:
                v = figure(name, b, p)
                row["peers"][name] = {"samples_per_s": v,
                                      "ratio": row["cuvae"] / v if v and row["cuvae"] else None}
            table.append(row)

    machine = gpu_name(torch_py) if device == "cuda" else cpu_model()
    head = "%6s %-9s %12s" % ("batch", "precision", "cuvae")
    for name, _ in peers:
        head += " %22s" % name
    print("machine: %s (%s); %s threads; %s; median of %d round(s) of %d x %d steps"
          % (machine, device, threads if device == "cpu" else "-",
             time.strftime("%Y-%m-%d"), args.rounds, args.repeats, args.steps))
    print("samples/s (ratio cuvae/peer in brackets)")
    print(head)
    for row in table:
        line = "%6d %-9s %12s" % (row["batch"], row["precision"], fmt(row["cuvae"]))
        for name, _ in peers:
            pr = row["peers"][name]
            cell = fmt(pr["samples_per_s"])
            if pr["ratio"]:
                cell += " (%.2fx)" % pr["ratio"]
            line += " %22s" % cell
        print(line)
    return {
        "tool": "bench/run_peers.py", "device": device, "machine": machine, "cpu": cpu_model(),
        "threads": threads if device == "cpu" else None,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(sys.argv), "rounds": args.rounds, "commands": commands,
        "table": table, "runs": runs,
    }


def fmt(v):
    return "-" if v is None else "%.0f" % v


# ---- one or more epochs on the real data ------------------------------------------------------

def epochs(args):
    cuvae = find_cuvae(args.cuvae)
    torch_py = python_with("torch", args.python)
    if not torch_py:
        raise SystemExit("run_peers: --epoch needs a Python that imports torch")
    device = pick_device(args, torch_py)
    threads = args.threads if args.threads is not None else (os.cpu_count() if device == "cpu"
                                                             else 0)
    env = thread_env(threads if device == "cpu" else 0)
    config = args.config or os.path.join(ROOT, "configs", "fashion_mnist.ini")
    E = args.epoch
    tmp = tempfile.mkdtemp(prefix="cuvae_epoch_")
    try:
        run_dir = os.path.join(tmp, "run")
        # Images off on both sides: the epoch time is training plus validation, nothing else.
        cmd = [cuvae, "train", config] + args.overrides + [
            "train.epochs=%d" % E, "train.device=%s" % device, "output.dir=" + run_dir,
            "output.images=0"]
        if device == "cuda" and args.precision:
            cmd.append("train.precision=" + args.precision.split(",")[0])
        run(cmd, env, "cuvae train")
        cu_epochs, cu_final = [], {}
        for line in open(os.path.join(run_dir, "metrics.jsonl")):
            rec = json.loads(line)
            if rec.get("type") == "epoch":
                cu_epochs.append(rec)
            elif rec.get("type") == "final":
                cu_final = rec
        out = os.path.join(tmp, "torch.json")
        tcmd = [torch_py, os.path.join(PEERS, "torch_vae.py"), config] + args.overrides + [
            "--train-epochs", str(E), "--device", device, "--json", out]
        if device == "cuda" and args.precision:
            tcmd += ["--precision", args.precision.split(",")[0]]
        if device == "cpu" and threads:
            tcmd += ["--threads", str(threads)]
        if args.torch_flush_denormal:
            tcmd += ["--flush-denormal"]
        run(tcmd, env, "torch_vae.py --train-epochs")
        tr = json.load(open(out))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    machine = gpu_name(torch_py) if device == "cuda" else cpu_model()
    print("machine: %s (%s); %s threads; %s; config %s, %d epoch(s)"
          % (machine, device, threads if device == "cpu" else "-", time.strftime("%Y-%m-%d"),
             os.path.relpath(config, ROOT) if config.startswith(ROOT) else config, E))
    print("%5s %14s %14s %8s %18s %18s" % ("epoch", "cuvae s", "torch s", "ratio",
                                             "cuvae valid -ELBO", "torch valid -ELBO"))
    for i in range(E):
        c = cu_epochs[i] if i < len(cu_epochs) else {}
        t = tr["epochs"][i] if i < len(tr["epochs"]) else {}
        cs, ts = c.get("epoch_s"), t.get("epoch_s")
        print("%5d %14s %14s %8s %18s %18s" % (
            i + 1, "%.2f" % cs if cs else "-", "%.2f" % ts if ts else "-",
            "%.2fx" % (ts / cs) if cs and ts else "-",
            "%.4f" % c["valid_neg_elbo"] if c.get("valid_neg_elbo") is not None else "-",
            "%.4f" % t["valid_neg_elbo"] if t.get("valid_neg_elbo") is not None else "-"))
    ct, tt = cu_final.get("test_neg_elbo"), tr.get("test_neg_elbo")
    rel = abs(ct - tt) / abs(tt) if ct is not None and tt else None
    print("test negative ELBO (K = 1): cuvae %s, torch %s%s" % (
        "%.4f" % ct if ct is not None else "-", "%.4f" % tt if tt is not None else "-",
        ", relative difference %.2f%%" % (100 * rel) if rel is not None else ""))
    print("(ratio = torch epoch time / cuvae epoch time: above 1, cuvae is faster)")
    return {
        "tool": "bench/run_peers.py --epoch", "device": device, "machine": machine,
        "cpu": cpu_model(), "threads": threads if device == "cpu" else None,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(sys.argv), "cuvae_command": " ".join(cmd),
        "torch_command": " ".join(tcmd), "epochs": E,
        "cuvae": {"epochs": cu_epochs, "final": cu_final}, "torch": tr,
        "test_neg_elbo_relative_difference": rel,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", nargs="?", help="cuvae INI config (default: cuvae's defaults; "
                    "--epoch: configs/fashion_mnist.ini)")
    ap.add_argument("overrides", nargs="*", help="section.key=value for every tool")
    ap.add_argument("--cuvae", help="the cuvae binary (default: $CUVAE_BINARY, build*/cuvae)")
    ap.add_argument("--python", help="Python that imports torch (default: found)")
    ap.add_argument("--jax-python", help="Python that imports jax (default: found)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--batch", default="128,1024,4096")
    ap.add_argument("--precision", default=None,
                    help="default: fp32 on the CPU, fp32,tf32,bf16 on CUDA")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads for every tool (default: all CPUs)")
    ap.add_argument("--peers", help="comma-separated subset, e.g. torch-eager,jax")
    ap.add_argument("--eval-samples", type=int, default=0,
                    help="also time cuvae's K-sample evaluation (default 0: off)")
    ap.add_argument("--epoch", type=int, default=0, metavar="E",
                    help="train E epochs of the real data with cuvae and PyTorch instead")
    ap.add_argument("--torch-flush-denormal", action="store_true",
                    help="--epoch on the CPU: the PyTorch peer flushes denormals as cuvae does "
                         "(torch.set_flush_denormal); default: PyTorch's default, as a script has")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    if args.config and "=" in args.config and not os.path.exists(args.config):
        args.overrides.insert(0, args.config)
        args.config = None
    result = epochs(args) if args.epoch > 0 else bench(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
