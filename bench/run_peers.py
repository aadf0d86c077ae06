#!/usr/bin/env python3
"""One driver for cuvae's speed comparison: on the current machine it runs `cuvae bench` and every
peer that is available with the same config, batch sizes, precisions and step counts, in the same
session, and prints samples/s with the ratio cuvae/peer (above 1: cuvae is faster) against each
peer and against the best of them, plus JSON with the machine, the date and every command.

Peers: on CUDA, PyTorch eager, torch.compile (default and max-autotune), a manually captured CUDA
graph of the whole step, and JAX jit; on the CPU, PyTorch eager and JAX jit. When no Python
imports jax, JAX (CPU) is installed from PyPI into bench/.venv-jax first (--no-install: leave JAX
out). With --rounds R the whole sequence runs R times, interleaved, and the median of each figure
is reported, which evens out a machine whose speed drifts.

Every tool runs as well as it can on this machine, as a user would set it up:
  - threads (CPU): each tool is timed briefly at 1, the powers of two below the CPU count, and
    the CPU count, and runs at its fastest, per batch size (PyTorch's OpenMP element-wise passes
    can make one thread faster than two); --threads N fixes every tool, --peer-threads N the
    peers, --cuvae-threads N cuvae; the table and the JSON say which count each figure used;
  - BLAS kernels: cuvae re-executes itself with OPENBLAS_CORETYPE when OpenBLAS picked kernels
    below what the CPU supports (host/cpu/blas_info.c); the PyTorch peers, on the same OpenBLAS, get
    the same variable from here (peers/tuning.py makes the same decision from /proc/cpuinfo); an
    OPENBLAS_CORETYPE already in the environment is the user's and stands for cuvae and PyTorch
    alike. JAX computes with XLA's own kernels, not OpenBLAS; its numpy's OpenBLAS is slowed by
    OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, so both are removed from its environment.

--epoch E instead trains the real data for E epochs with `cuvae train` and with
bench/peers/torch_vae.py --train-epochs E on the same device, and prints both epoch times and
test negative ELBOs (E = 1 is the README's epoch-time figure; E = 10 is the "within 1% of
PyTorch" check).

--eval K --checkpoint FILE times the K-sample evaluation instead: `cuvae eval FILE --samples K
--limit N` against torch_vae.py --checkpoint FILE --eval-samples K --limit N (noise drawn by
torch.randn, the same B x K rows per call as cuvae's 65536), each at its best thread count, and
prints examples/s, both bounds and the ratio.

Only the standard library is needed here; the peers run under a Python that imports torch (and,
for JAX, one that imports jax), found automatically or given with --python / --jax-python."""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers"))
from report import cpu_model  # noqa: E402 (standard library only)
import tuning  # noqa: E402 (standard library only)
from driver import (  # noqa: E402
    log, find_cuvae, python_with, jax_python, run, run_json, thread_env, pick_device, gpu_name,
    torch_blas_env, calibrate, chosen, tool_threads, settings_rates, blas_of, cuvae_blas,
    blas_text, fmt, at, config_batch, PEERS, ROOT)

EVAL_ROWS = 65536  # cuvae eval's B x K rows per backend call (host/cli/eval_cmd.c)


# ---- throughput -------------------------------------------------------------------------------

def conv_model(args):
    """Whether the config (file and overrides) sets model.encoder or model.decoder: a model the
    JAX peer does not build (the PyTorch peer does)."""
    import configparser
    cp = configparser.ConfigParser(inline_comment_prefixes=(";", "#"), interpolation=None,
                                   strict=False)
    if args.config:
        cp.read(args.config)
    layers = [cp.get("model", k, fallback="").strip() for k in ("encoder", "decoder")]
    for ov in args.overrides:
        key, _, value = ov.partition("=")
        if key.strip() in ("model.encoder", "model.decoder"):
            layers.append(value.strip())
    return any(layers)


def bench_tools(args, device, cuvae, torch_py, jax_py, torch_extra):
    """[(name, argv(batches, threads, timing, precisions), env(threads))] of every tool."""
    cfg = ([args.config] if args.config else []) + args.overrides
    cpu = device == "cpu"

    def timing_args(batches, timing, precisions):
        steps, warmup, repeats = timing
        return ["--batch", ",".join(str(b) for b in batches), "--precision", precisions,
                "--steps", str(steps), "--warmup", str(warmup), "--repeats", str(repeats)]

    def threads_arg(t):
        return ["--threads", str(t)] if cpu and t else []

    tools = [("cuvae",
              lambda b, t, timing, p, ev=0: [cuvae, "bench"] + cfg + ["--device", device] +
              timing_args(b, timing, p) + ["--eval-samples", str(ev)],
              lambda t: thread_env(t if cpu else 0))]
    wanted = set(args.peers.split(",")) if args.peers else None
    if torch_py:
        for mode in (["eager"] if cpu else ["eager", "compile", "compile-max", "graph"]):
            if wanted is None or "torch-" + mode in wanted:
                tools.append(("torch-" + mode,
                              lambda b, t, timing, p, ev=0, mode=mode:
                              [torch_py, os.path.join(PEERS, "torch_vae.py")] + cfg +
                              ["--device", device, "--mode", mode] + timing_args(b, timing, p) +
                              threads_arg(t),
                              lambda t: thread_env(t if cpu else 0, extra=torch_extra)))
    else:
        log("run_peers: note: no Python imports torch; the PyTorch peers are left out")
    if jax_py and (wanted is None or "jax" in wanted) and conv_model(args):
        log("run_peers: note: the JAX peer builds the MLP of model.hidden only; left out of this "
            "conv model")
    elif jax_py and (wanted is None or "jax" in wanted):
        tools.append(("jax",
                      lambda b, t, timing, p, ev=0: [jax_py, os.path.join(PEERS, "jax_vae.py")] +
                      cfg + ["--device", device] + timing_args(b, timing, p) + threads_arg(t),
                      lambda t: thread_env(t if cpu else 0,
                                           drop=("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"))))
    elif not jax_py and (wanted is None or "jax" in wanted):
        log("run_peers: note: no Python imports jax; the JAX peer is left out")
    return tools


def bench(args):
    cuvae = find_cuvae(args.cuvae)
    torch_py = python_with("torch", args.python)
    device = pick_device(args, torch_py)
    jax_py = jax_python(args, device) if not args.peers or "jax" in args.peers.split(",") \
        else None
    cpu = device == "cpu"
    precisions = args.precision or ("fp32" if cpu else "fp32,tf32,bf16")
    first_precision = precisions.split(",")[0]
    batches = [int(b) for b in args.batch.split(",")]
    torch_extra, torch_why = torch_blas_env(torch_py) if torch_py and cpu else ({}, "")
    tools = bench_tools(args, device, cuvae, torch_py, jax_py, torch_extra)
    candidates = tuning.thread_candidates(os.cpu_count())
    timing = (args.steps, args.warmup, args.repeats)
    calib_timing = (args.calibrate_steps, min(args.warmup, 3), 3)

    tmp = tempfile.mkdtemp(prefix="cuvae_peers_")
    runs = {name: [] for name, _, _ in tools}
    threads, calibration, commands, blas = {}, {}, {}, {}
    try:
        for name, argv, env in tools:
            fixed = tool_threads(args, name) if cpu else None

            def measure(t, name=name, argv=argv, env=env):
                doc = run_json(argv(batches, t, calib_timing, first_precision), env(t),
                               name + " calibration", tmp, "%s-calib-%d" % (name, t))
                return settings_rates(doc, first_precision, fastest=True)
            choice, table = calibrate(name, measure, candidates, fixed) if cpu else (None, {})
            threads[name] = {b: chosen(choice, fixed, b) if cpu else None for b in batches}
            calibration[name] = table
        for r in range(args.rounds):
            for name, argv, env in tools:
                groups = tuning.group_by_threads(threads[name])
                for i, (t, group) in enumerate(sorted(groups.items(), key=lambda g: g[1])):
                    ev = args.eval_samples if name == "cuvae" and i == 0 else 0
                    cmd = argv(group, t, timing, precisions, ev)
                    commands["%s @%s" % (name, t)] = " ".join(cmd)
                    doc = run_json(cmd, env(t), name, tmp, "%s-%d-%s" % (name, r, t))
                    doc["threads_used"] = t
                    runs[name].append(doc)
                    blas.setdefault(name, blas_of(name, doc, torch_why))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def figure(tool, batch, precision):
        vals = [s["samples_per_s"] for doc in runs[tool] for s in doc["settings"]
                if s["batch"] == batch and s["precision"] == precision and s.get("status") == "ok"]
        return statistics.median(vals) if vals else None

    peers = [name for name, _, _ in tools if name != "cuvae"]
    table = []
    for p in precisions.split(","):
        for b in batches:
            cu = figure("cuvae", b, p)
            row = {"batch": b, "precision": p, "cuvae": cu, "cuvae_threads": threads["cuvae"][b],
                   "peers": {}, "best_peer": None, "best_peer_samples_per_s": None,
                   "ratio_best": None}
            for name in peers:
                v = figure(name, b, p)
                row["peers"][name] = {"samples_per_s": v, "threads": threads[name][b],
                                      "ratio": cu / v if v and cu else None}
                if v and (row["best_peer_samples_per_s"] is None
                          or v > row["best_peer_samples_per_s"]):
                    row["best_peer"], row["best_peer_samples_per_s"] = name, v
            if row["best_peer"] and cu:
                row["ratio_best"] = cu / row["best_peer_samples_per_s"]
            table.append(row)

    machine = gpu_name(torch_py) if device == "cuda" else cpu_model()
    print("machine: %s (%s); %s; median of %d round(s) of %d x %d steps"
          % (machine, device, time.strftime("%Y-%m-%d"), args.rounds, args.repeats, args.steps))
    print("samples/s @ threads (ratio cuvae/peer in brackets; above 1: cuvae is faster)")
    head = "%6s %-9s %12s" % ("batch", "precision", "cuvae")
    for name in peers:
        head += " %24s" % name
    print(head + "   %-22s" % "cuvae / best peer")
    for row in table:
        line = "%6d %-9s %12s" % (row["batch"], row["precision"],
                                   at(row["cuvae"], row["cuvae_threads"]))
        for name in peers:
            pr = row["peers"][name]
            cell = at(pr["samples_per_s"], pr["threads"])
            if pr["ratio"]:
                cell += " (%.2fx)" % pr["ratio"]
            line += " %24s" % cell
        if row["ratio_best"]:
            line += "   %.2fx (%s)" % (row["ratio_best"], row["best_peer"])
        print(line)
    for name, _, _ in (tools if cpu else []):  # on CUDA the GEMMs are cuBLAS's
        print("%-12s %s" % (name + ":", blas_text(blas.get(name))))
    if any(calibration.values()):
        print("thread calibration (%s, %d steps; samples/s by threads):" % (first_precision,
                                                                           args.calibrate_steps))
        for name, tab in calibration.items():
            if tab:
                print("  %-11s " % name + "; ".join(
                    "batch %d: %s" % (b, ", ".join("%d: %s" % (t, fmt(tab[t].get(b)))
                                                   for t in sorted(tab)))
                    for b in batches))
    return {
        "tool": "bench/run_peers.py", "device": device, "machine": machine, "cpu": cpu_model(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(sys.argv), "rounds": args.rounds, "commands": commands,
        "threads": {n: {str(b): t for b, t in v.items()} for n, v in threads.items()},
        "thread_candidates": candidates if cpu else None,
        "calibration": {n: {str(t): {str(b): v for b, v in r.items()} for t, r in tab.items()}
                        for n, tab in calibration.items()},
        "blas": blas, "table": table, "runs": runs,
    }


# ---- the K-sample evaluation of a checkpoint --------------------------------------------------

def eval_compare(args):
    if not args.checkpoint:
        raise SystemExit("run_peers: --eval K needs --checkpoint FILE (a cuvae checkpoint)")
    ckpt = os.path.abspath(args.checkpoint)
    cuvae = find_cuvae(args.cuvae)
    torch_py = python_with("torch", args.python)
    if not torch_py:
        raise SystemExit("run_peers: --eval needs a Python that imports torch")
    device = pick_device(args, torch_py)
    cpu = device == "cpu"
    K, N = args.eval, args.limit
    torch_extra, torch_why = torch_blas_env(torch_py) if cpu else ({}, "")
    extra = ["--test-images", args.test_images] if args.test_images else []
    precision = (args.precision or "fp32").split(",")[0]

    def cuvae_cmd(n):
        return [cuvae, "eval", ckpt, "--samples", str(K), "--limit", str(n), "--device",
                device] + (["--precision", precision] if not cpu else []) + extra

    def torch_cmd(n, t):
        return [torch_py, os.path.join(PEERS, "torch_vae.py"), "--checkpoint", ckpt,
                "--eval-samples", str(K), "--limit", str(n), "--noise", args.eval_noise,
                "--eval-rows", str(EVAL_ROWS), "--device", device, "--precision", precision] + \
            extra + (["--threads", str(t)] if cpu and t else []) + \
            (["--flush-denormal"] if args.torch_flush_denormal else [])

    tools = [("cuvae", lambda n, t: cuvae_cmd(n), lambda t: thread_env(t if cpu else 0)),
             ("torch", torch_cmd, lambda t: thread_env(t if cpu else 0, extra=torch_extra))]
    candidates = tuning.thread_candidates(os.cpu_count())
    calib_n = max(1, min(N, args.calibrate_limit))
    tmp = tempfile.mkdtemp(prefix="cuvae_eval_")
    threads, calibration, results, commands, blas = {}, {}, {}, {}, {}
    try:
        for name, cmd, env in tools:
            fixed = tool_threads(args, name) if cpu else None

            def measure(t, name=name, cmd=cmd, env=env):
                doc = run_json(cmd(calib_n, t), env(t), name + " calibration", tmp,
                               "%s-calib-%d" % (name, t))
                return {"eval": doc["examples_per_s"]}
            choice, table = calibrate(name, measure, candidates, fixed) if cpu else (None, {})
            threads[name] = chosen(choice, fixed, "eval") if cpu else None
            calibration[name] = {str(t): r["eval"] for t, r in table.items()}
            results[name] = []
        for r in range(args.rounds):
            for name, cmd, env in tools:
                c = cmd(N, threads[name])
                commands[name] = " ".join(c)
                doc = run_json(c, env(threads[name]), name + " eval", tmp, "%s-%d" % (name, r))
                results[name].append(doc)
                if name not in blas:
                    blas[name] = cuvae_blas(cuvae, env(threads[name])) if name == "cuvae" \
                        else blas_of(name, doc, torch_why)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def med(name, key):
        vals = [d[key] for d in results[name] if d.get(key) is not None]
        return statistics.median(vals) if vals else None

    summary = {name: {"threads": threads[name], "seconds": med(name, "seconds"),
                      "examples_per_s": med(name, "examples_per_s"),
                      "neg_iw_bound": results[name][0].get("neg_iw_bound"),
                      "neg_elbo": results[name][0].get("neg_elbo"),
                      "examples": results[name][0].get("examples")} for name, _, _ in tools}
    cu, tr = summary["cuvae"]["examples_per_s"], summary["torch"]["examples_per_s"]
    ratio = cu / tr if cu and tr else None
    machine = gpu_name(torch_py) if device == "cuda" else cpu_model()
    print("machine: %s (%s); %s; K = %d, %d test examples, median of %d round(s)"
          % (machine, device, time.strftime("%Y-%m-%d"), K, N, args.rounds))
    print("%-6s %8s %10s %12s %16s %12s" % ("tool", "threads", "seconds", "examples/s",
                                             "-log p(x) bound", "neg. ELBO"))
    for name, _, _ in tools:
        s = summary[name]
        print("%-6s %8s %10.2f %12.2f %16.4f %12.4f" % (
            name, s["threads"] or "-", s["seconds"], s["examples_per_s"], s["neg_iw_bound"],
            s["neg_elbo"]))
    print("ratio cuvae / torch (examples/s): %s; torch's noise: %s"
          % ("%.2fx" % ratio if ratio else "-", args.eval_noise))
    for name, _, _ in (tools if cpu else []):
        print("%-7s %s" % (name + ":", blas_text(blas.get(name))))
    if any(calibration.values()):
        print("thread calibration (%d examples; examples/s by threads): %s" % (calib_n, "; ".join(
            "%s %s" % (n, ", ".join("%s: %.2f" % kv for kv in tab.items()))
            for n, tab in calibration.items() if tab)))
    return {
        "tool": "bench/run_peers.py --eval", "device": device, "machine": machine,
        "cpu": cpu_model(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(sys.argv), "checkpoint": ckpt, "samples": K, "limit": N,
        "torch_noise": args.eval_noise, "rounds": args.rounds, "commands": commands,
        "thread_candidates": candidates if cpu else None, "calibration": calibration,
        "blas": blas, "summary": summary, "ratio": ratio, "runs": results,
    }
# ---- one or more epochs on the real data ------------------------------------------------------

def epochs(args):
    cuvae = find_cuvae(args.cuvae)
    torch_py = python_with("torch", args.python)
    if not torch_py:
        raise SystemExit("run_peers: --epoch needs a Python that imports torch")
    device = pick_device(args, torch_py)
    cpu = device == "cpu"
    config = args.config or os.path.join(ROOT, "configs", "fashion_mnist.ini")
    E = args.epoch
    torch_extra, torch_why = torch_blas_env(torch_py) if cpu else ({}, "")
    tmp = tempfile.mkdtemp(prefix="cuvae_epoch_")
    try:
        # Threads: each tool's fastest at the config's batch size, timed on synthetic data.
        threads, calibration = {"cuvae": 0, "torch": 0}, {}
        if cpu:
            batch = config_batch(config, args.overrides)
            tools = {name: (argv, env) for name, argv, env in bench_tools(
                argparse.Namespace(config=config, overrides=args.overrides, peers="torch-eager"),
                device, cuvae, torch_py, None, torch_extra)}
            tools["torch"] = tools.pop("torch-eager")
            timing = (args.calibrate_steps, 3, 3)
            for name, (argv, env_of) in tools.items():
                fixed = tool_threads(args, name)

                def measure(t, name=name, argv=argv, env_of=env_of):
                    doc = run_json(argv([batch], t, timing, "fp32"), env_of(t),
                                   name + " calibration", tmp, "%s-calib-%d" % (name, t))
                    return settings_rates(doc, "fp32", fastest=True)
                choice, table = calibrate(name, measure, tuning.thread_candidates(os.cpu_count()),
                                          fixed)
                threads[name] = chosen(choice, fixed, batch)
                calibration[name] = {str(t): r.get(batch) for t, r in table.items()}
        env = thread_env(threads["cuvae"])
        tenv = thread_env(threads["torch"], extra=torch_extra)
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
        if cpu and threads["torch"]:
            tcmd += ["--threads", str(threads["torch"])]
        if args.torch_flush_denormal:
            tcmd += ["--flush-denormal"]
        run(tcmd, tenv, "torch_vae.py --train-epochs")
        tr = json.load(open(out))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    machine = gpu_name(torch_py) if device == "cuda" else cpu_model()
    print("machine: %s (%s); threads: cuvae %s, torch %s; %s; config %s, %d epoch(s)"
          % (machine, device, threads["cuvae"] or "-", threads["torch"] or "-",
             time.strftime("%Y-%m-%d"),
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
    tb = blas_of("torch", tr, torch_why)
    cb = cuvae_blas(cuvae, env)
    if cpu:
        print("cuvae: %s" % blas_text(cb))
        print("torch: %s" % blas_text(tb))
    if any(calibration.values()):
        print("thread calibration (batch %d, samples/s by threads): %s" % (batch, "; ".join(
            "%s %s" % (n, ", ".join("%s: %s" % (t, fmt(v)) for t, v in tab.items()))
            for n, tab in calibration.items() if tab)))
    return {
        "tool": "bench/run_peers.py --epoch", "device": device, "machine": machine,
        "cpu": cpu_model(), "threads": threads if cpu else None, "calibration": calibration,
        "cuvae_blas": cb, "torch_blas": tb,
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
    ap.add_argument("--cuvae", help="the cuvae binary (default: $CUVAE_BINARY, build/cuvae)")
    ap.add_argument("--python", help="Python that imports torch (default: found)")
    ap.add_argument("--jax-python", help="Python that imports jax (default: found, else "
                    "bench/.venv-jax, made on the CPU when missing)")
    ap.add_argument("--no-install", action="store_true",
                    help="do not install JAX into bench/.venv-jax when no Python imports jax")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--batch", default="128,1024,4096")
    ap.add_argument("--precision", default=None,
                    help="default: fp32 on the CPU, fp32,tf32,bf16 on CUDA")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, metavar="N",
                    help="CPU threads for every tool, no calibration (default: each tool's "
                    "fastest of 1, the powers of two below the CPU count and the CPU count)")
    ap.add_argument("--peer-threads", "--torch-threads", dest="peer_threads", type=int,
                    default=None, metavar="N", help="CPU threads of the peers (PyTorch, JAX)")
    ap.add_argument("--cuvae-threads", type=int, default=None, metavar="N",
                    help="CPU threads of cuvae")
    ap.add_argument("--calibrate-steps", type=int, default=10, metavar="S",
                    help="steps per timed repeat of the thread calibration (default 10; 3 "
                    "warm-up steps, 3 repeats, the fastest counts)")
    ap.add_argument("--peers", help="comma-separated subset, e.g. torch-eager,jax")
    ap.add_argument("--eval-samples", type=int, default=0,
                    help="also time cuvae's K-sample evaluation in `cuvae bench` (default 0)")
    ap.add_argument("--epoch", type=int, default=0, metavar="E",
                    help="train E epochs of the real data with cuvae and PyTorch instead")
    ap.add_argument("--torch-flush-denormal", action="store_true",
                    help="--epoch, --eval on the CPU: the PyTorch peer flushes denormals as cuvae does "
                         "(torch.set_flush_denormal); default: PyTorch's default, as a script has")
    ap.add_argument("--eval", type=int, default=0, metavar="K",
                    help="time the K-sample evaluation of --checkpoint with cuvae eval and "
                    "torch_vae.py --checkpoint instead")
    ap.add_argument("--checkpoint", help="--eval: a cuvae checkpoint (model.safetensors)")
    ap.add_argument("--limit", type=int, default=100, metavar="N",
                    help="--eval: the first N test examples (default 100)")
    ap.add_argument("--calibrate-limit", type=int, default=10, metavar="N",
                    help="--eval: test examples of the thread calibration (default 10)")
    ap.add_argument("--eval-noise", default="torch", choices=["torch", "cuvae"],
                    help="--eval: the PyTorch peer's noise: torch.randn (default; the timed "
                    "peer) or cuvae's Philox streams in numpy (its bound then equals cuvae's)")
    ap.add_argument("--test-images", help="--eval: test images instead of the checkpoint's")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    if args.config and "=" in args.config and not os.path.exists(args.config):
        args.overrides.insert(0, args.config)
        args.config = None
    for name in ("threads", "peer_threads", "cuvae_threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            ap.error("--%s: expected a positive thread count" % name.replace("_", "-"))
    if args.eval > 0:
        result = eval_compare(args)
    elif args.epoch > 0:
        result = epochs(args)
    else:
        result = bench(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
