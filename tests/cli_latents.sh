#!/usr/bin/env bash
# `cuvae encode`, `traverse`, `interpolate`, the pictures and the reconstruction error, against
# PyTorch and numpy: a tiny model is trained on generated 12x12 data (dynamic binarization, so
# the test and validation sets are binarized once and the pictures must show the grey originals),
# then
#   - encode: numpy reads the .npz; mu and logvar of the test, validation and training sets
#     equal PyTorch's encoder (bench/peers/torch_vae.py's loader) on the same inputs (the sets as
#     bench/peers/vae_common.py prepares them, the split and binarization of cuvae_run_data_load);
#   - recon_mse / recon_psnr of `cuvae eval` (test set) and of the last epoch record of
#     metrics.jsonl (validation set) equal numpy's on the torch decoder's means at mu against
#     the grey originals;
#   - interpolate: its ends are the examples' mu exactly (linear and spherical), the middle points
#     follow the formulas, the decoded images are torch's, and the end tiles of its PNG equal the
#     reconstructions `cuvae reconstruct` draws; reconstruct draws the grey originals;
#   - traverse: one row per active dimension (the variance of mu over the set above 0.01), each
#     row's z differs from the example's mu only in its dimension and its images change along the
#     row; the grid's size, scale and caption band; the 2-D map of a latent = 2 model;
#   - bad indices and options: one-line errors, exit 2 (usage) or 1 (runtime).
# Skipped (77) without a Python that imports torch and numpy.
set -euo pipefail
NAME=cli_latents
src=${CUVAE_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
export CUVAE_SOURCE_DIR=$src

source "$(dirname "$0")/lib_python.sh"
need_python "torch, numpy"

# shellcheck source=tests/lib_cli.sh
. "$src/tests/lib_cli.sh"
make_data
make_config "$T/tiny.ini" "$T/run"

# An error found after the backend started: stderr holds the backend's "device: cpu" line and
# exactly one error line, "cuvae: ...", containing $1.
expect_error_after_start() {
    local lines
    lines=$(grep -c '^cuvae: ' "$T/err" || true)
    [ "$lines" -eq 1 ] || { cat "$T/err"; fail "expected one error line, got $lines"; }
    grep '^cuvae: ' "$T/err" | grep -qF -- "$1" || { cat "$T/err"; fail "error does not mention '$1'"; }
    [ "$(grep -vc '^cuvae: \|^device: ' "$T/err" || true)" -eq 0 ] || { cat "$T/err"; fail "other lines"; }
}

expect_rc 0 "$BIN" train "$T/tiny.ini" train.epochs=2 --device cpu
CK=$T/run/model.safetensors

# --- encode -----------------------------------------------------------------------------------
expect_rc 0 "$BIN" encode "$CK" --device cpu --out "$T/test.npz"
expect_out "of the test set"
expect_rc 0 "$BIN" encode "$CK" --device cpu --set valid --out "$T/valid.npz" --batch 7
expect_rc 0 "$BIN" encode "$CK" --device cpu --set train --out "$T/train.npz" --limit 123
(cd "$T" && expect_rc 0 "$BIN" encode "$CK" --device cpu)
[ -s "$T/latents.npz" ] || fail "encode wrote no latents.npz by default"
cmp -s "$T/latents.npz" "$T/test.npz" || fail "encode's default output differs from --out's"
# A long set's progress lines go to stderr (a line every CUVAE_PROGRESS_SECONDS off a terminal).
expect_rc 0 env CUVAE_PROGRESS_SECONDS=0 "$BIN" encode "$CK" --device cpu --batch 10 \
    --out "$T/p.npz"
expect_err "encode: 10/200 examples"

# --- eval: the reconstruction error -------------------------------------------------------------
expect_rc 0 "$BIN" eval "$CK" --device cpu --samples 2 --json "$T/eval.json"
expect_out "reconstruction MSE"
expect_out "reconstruction PSNR"

# --- interpolate and reconstruct ----------------------------------------------------------------
expect_rc 0 "$BIN" interpolate "$CK" --device cpu --from 3 --to 7 --steps 6 --scale 1 \
    --out "$T/lin.png" --npz "$T/lin.npz"
expect_rc 0 "$BIN" interpolate "$CK" --device cpu --from 3 --to 7 --steps 5 --spherical \
    --scale 1 --out "$T/sph.png" --npz "$T/sph.npz"
expect_out "(spherical)"
expect_rc 0 "$BIN" reconstruct "$CK" --device cpu --n 8 --per-row 8 --scale 1 --out "$T/rec.png"
expect_rc 0 "$BIN" reconstruct "$CK" --device cpu --n 8 --per-row 8 --scale 3 --caption \
    --out "$T/rec3.png"

# --- traverse -----------------------------------------------------------------------------------
expect_rc 0 "$BIN" traverse "$CK" --device cpu --example 5 --steps 7 --range 2.5 \
    --out "$T/trav.png" --npz "$T/trav.npz"
grep '^row ' "$T/out" >"$T/rows.txt" || fail "traverse listed no rows: $(cat "$T/out")"
expect_rc 0 "$BIN" traverse "$CK" --device cpu --example 5 --steps 3 --dims 2,0 --scale 1 \
    --out "$T/dims.png" --npz "$T/dims.npz"
# A threshold no dimension passes.
expect_rc 1 "$BIN" traverse "$CK" --device cpu --threshold 1e9 --out "$T/none.png"
expect_error_after_start "no latent dimension is active"

# --- the 2-D map of a latent = 2 model ----------------------------------------------------------
expect_rc 0 "$BIN" train "$T/tiny.ini" train.epochs=1 model.latent=2 output.dir="$T/run2" \
    output.images=0 --device cpu
expect_rc 0 "$BIN" traverse "$T/run2/model.safetensors" --device cpu --map --steps 5 --range 2 \
    --scale 1 --out "$T/map.png" --npz "$T/map.npz"
expect_rc 2 "$BIN" traverse "$CK" --device cpu --map --out "$T/nomap.png"
expect_error_after_start "--map: the model has 4 latent dimensions, the map needs 2"

# --- the numbers against torch and numpy --------------------------------------------------------
PYTHONPATH="$src/bench/peers" "$py" - "$T" "$(cat "$T/rows.txt" | wc -l)" "$BIN" <<'EOF'
import copy, gzip, json, struct, subprocess, sys, zlib
import numpy as np
import torch
import torch_vae
from vae_common import run_data

t, n_rows, binary = sys.argv[1], int(sys.argv[2]), sys.argv[3]
failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("cli_latents: FAIL:", what)


def close(a, b, what, atol=2e-5, rtol=1e-5):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ok = a.shape == b.shape and np.isfinite(a).all() and bool(
        np.all(np.abs(a - b) <= atol + rtol * np.abs(b)))
    err = float(np.max(np.abs(a - b))) if a.shape == b.shape and a.size else float("nan")
    print("cli_latents: %-44s max |diff| %.2e%s" % (what, err, "" if ok else "  <-- FAIL"))
    check(ok, what)


def png(path):
    """(pixels [H, W] or [H, W, 3] uint8) of an 8-bit PNG written with filter type 0."""
    b = open(path, "rb").read()
    assert b[:8] == b"\x89PNG\r\n\x1a\n", path
    pos, idat = 8, b""
    while pos < len(b):
        (n,), kind = struct.unpack(">I", b[pos:pos + 4]), b[pos + 4:pos + 8]
        body = b[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    ch = 3 if ctype == 2 else 1
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + w * ch)
    assert (raw[:, 0] == 0).all(), "filter type 0 expected"
    px = raw[:, 1:]
    return px.reshape(h, w, 3) if ch == 3 else px.reshape(h, w)


def tile(img, r, c, size, scale=1, top=0):
    s = size * scale + 1
    return img[top + r * s: top + r * s + size * scale, c * s: c * s + size * scale]


model, cfg, meta, _, _ = torch_vae.load_checkpoint(t + "/run/model.safetensors",
                                                   dtype=torch.float64)
model.eval()
train, valid, test = run_data(cfg)  # as the model sees them
grey = copy.copy(cfg)
grey.binarize = "none"
gtrain, gvalid, gtest = run_data(grey)  # the originals
labels = np.frombuffer(gzip.open(t + "/data/t10k-labels-idx1-ubyte.gz").read()[8:], np.uint8)


def encode(x):
    with torch.no_grad():
        mu, lv = model.encode(torch.from_numpy(x.astype(np.float64) / 255.0))
    return mu.numpy(), lv.numpy()


def decode_mean(z):
    with torch.no_grad():
        return torch.sigmoid(model.decode(torch.from_numpy(np.asarray(z, np.float64)))).numpy()


# encode: what numpy reads, against torch's encoder on the same inputs.
for name, x, n in (("test", test, len(test)), ("valid", valid, len(valid)), ("train", train, 123)):
    z = np.load("%s/%s.npz" % (t, name))
    want = {"mu", "logvar", "labels"}
    check(set(z.files) == want, "%s.npz members %s" % (name, z.files))
    check(z["mu"].dtype == np.float32 and z["mu"].shape == (n, cfg.latent),
          "%s mu %s %s" % (name, z["mu"].dtype, z["mu"].shape))
    check(z["logvar"].dtype == np.float32 and z["logvar"].shape == (n, cfg.latent),
          "%s logvar %s" % (name, z["logvar"].shape))
    mu, lv = encode(x[:n])
    close(z["mu"], mu, "encode --set %s: mu vs torch" % name)
    close(z["logvar"], lv, "encode --set %s: logvar vs torch" % name)
check(np.array_equal(np.load(t + "/test.npz")["labels"], labels), "test labels")
check(len(np.unique(test)) == 2 and len(np.unique(gtest)) > 2, "the test set is binarized")

# The reconstruction error: eval (test set) and the last epoch record (validation set).
def recon(x_model, x_grey):
    mu, _ = encode(x_model)
    xm = np.clip(decode_mean(mu), 0, 1)
    mse = float(np.mean((xm - x_grey.astype(np.float64) / 255.0) ** 2))
    return mse, 10 * np.log10(1 / mse)


ev = json.load(open(t + "/eval.json"))
mse, psnr = recon(test, gtest)
close(ev["recon_mse"], mse, "eval recon_mse vs numpy", atol=0)
close(ev["recon_psnr"], psnr, "eval recon_psnr vs numpy", atol=0)
# Against the binarized draw it would differ: the originals are what is compared.
check(abs(recon(test, test)[0] - mse) > 1e-3 * mse, "eval's MSE uses the grey originals")
epochs = [json.loads(l) for l in open(t + "/run/metrics.jsonl") if '"epoch"' in l]
epochs = [e for e in epochs if e["type"] == "epoch"]
check(len(epochs) == 2, "two epoch records")
mse, psnr = recon(valid, gvalid)
close(epochs[-1]["recon_mse"], mse, "epoch record recon_mse vs numpy", atol=0)
close(epochs[-1]["recon_psnr"], psnr, "epoch record recon_psnr vs numpy", atol=0)
check(all(e["recon_mse"] > 0 for e in epochs), "recon_mse in every epoch record")
# The run's reconstruction grid: the validation set's grey originals above their
# reconstructions, 12x12 tiles drawn 5x, 8 a row, under the caption band.
ri = png(t + "/run/images/recon-epoch-002.png")
band, s5 = (8 + 4) * 2, 5
check(ri.shape == (band + 8 * (12 * s5 + 1) - 1, 8 * (12 * s5 + 1) - 1),
      "recon-epoch-002.png size %s" % (ri.shape,))
for i in range(8):
    check(np.array_equal(tile(ri, 0, i, 12, s5, band),
                         np.kron(gvalid[i].reshape(12, 12), np.ones((s5, s5), np.uint8))),
          "the run's grid draws validation image %d's grey original" % i)
check(ri[:band].max() == 255, "the run's grid has a caption")

# interpolate: exact ends, the formulas between, torch's images, the reconstructions' tiles.
mu_all = np.load(t + "/test.npz")["mu"]
a, b = mu_all[3], mu_all[7]
lin = np.load(t + "/lin.npz")
check(lin["z"].shape == (6, cfg.latent) and lin["x"].shape == (6, 144), "lin.npz shapes")
check(np.array_equal(lin["z"][0], a) and np.array_equal(lin["z"][-1], b),
      "linear interpolation ends are mu_3 and mu_7 exactly")
ts = np.arange(6) / 5.0
close(lin["z"], (1 - ts)[:, None] * a + ts[:, None] * b, "linear interpolation points")
close(lin["x"], decode_mean(lin["z"]), "interpolated images vs torch decoder")
sph = np.load(t + "/sph.npz")
check(np.array_equal(sph["z"][0], a) and np.array_equal(sph["z"][-1], b),
      "spherical interpolation ends are mu_3 and mu_7 exactly")
a64, b64 = a.astype(np.float64), b.astype(np.float64)
om = np.arccos(np.dot(a64, b64) / np.linalg.norm(a64) / np.linalg.norm(b64))
ts = np.arange(5) / 4.0
want = (np.sin((1 - ts) * om)[:, None] * a64 + np.sin(ts * om)[:, None] * b64) / np.sin(om)
close(sph["z"], want, "spherical interpolation points")
check(not np.allclose(sph["z"][2], lin["z"][0] * 0.5 + lin["z"][-1] * 0.5, atol=1e-4),
      "spherical midpoint differs from the linear one")
rec, li = png(t + "/rec.png"), png(t + "/lin.png")
check(li.shape == (12, 6 * 13 - 1), "lin.png size %s" % (li.shape,))
check(rec.shape == (2 * 13 - 1, 8 * 13 - 1), "rec.png size %s" % (rec.shape,))
check(np.array_equal(tile(li, 0, 0, 12), tile(rec, 1, 3, 12)),
      "interpolation's first tile is example 3's reconstruction")
check(np.array_equal(tile(li, 0, 5, 12), tile(rec, 1, 7, 12)),
      "interpolation's last tile is example 7's reconstruction")
for i in range(8):
    check(np.array_equal(tile(rec, 0, i, 12), gtest[i].reshape(12, 12)),
          "reconstruct draws test image %d's grey original" % i)
rec3 = png(t + "/rec3.png")
band = (8 + 4) * 2
check(rec3.shape == (band + 2 * 37 - 1, 8 * 37 - 1), "rec3.png size %s" % (rec3.shape,))
check(rec3[:band].max() == 255 and rec3[:band].min() == 0, "a caption band of white text")
check(np.array_equal(tile(rec3, 0, 2, 12, 3, band),
                     np.kron(gtest[2].reshape(12, 12), np.ones((3, 3), np.uint8))),
      "tiles drawn 3x, nearest neighbour")

# traverse: active rows, sweeps in one dimension, images that change along each row.
var = mu_all.var(axis=0)
active = [d for d in range(cfg.latent) if var[d] > 0.01]
check(n_rows == len(active) and n_rows > 0, "traverse rows %d, active %s" % (n_rows, active))
# A threshold between the two largest variances: only the dimension of the largest is a row.
order = np.argsort(var)
thr = float(np.sqrt(var[order[-1]] * var[order[-2]]))
out = subprocess.run([binary, "traverse", t + "/run/model.safetensors", "--device", "cpu",
                      "--threshold", repr(thr), "--out", t + "/one.png"], capture_output=True,
                     text=True)
rows = [l for l in out.stdout.splitlines() if l.startswith("row ")]
check(out.returncode == 0 and len(rows) == 1 and ("dimension %d," % order[-1]) in rows[0],
      "--threshold %g keeps dimension %d only: %s" % (thr, order[-1], rows))
tr = np.load(t + "/trav.npz")
check(tr["z"].shape == (n_rows * 7, cfg.latent), "trav z %s" % (tr["z"].shape,))
offs = np.linspace(-2.5, 2.5, 7)
for r, d in enumerate(active):
    zr = tr["z"][r * 7:(r + 1) * 7]
    want = np.repeat(mu_all[5][None, :], 7, 0)
    want[:, d] += offs
    close(zr, want, "traverse row %d sweeps dimension %d" % (r + 1, d), atol=1e-6)
    xr = tr["x"][r * 7:(r + 1) * 7]
    check(np.abs(xr[0] - xr[-1]).max() > 1e-3, "row %d's images change along the row" % (r + 1))
img = png(t + "/trav.png")
s = 5  # 12x12 tiles drawn 5x by default
check(img.shape == (n_rows * (12 * s + 1) - 1, 7 * (12 * s + 1) - 1), "trav.png %s" % (img.shape,))
dz = np.load(t + "/dims.npz")["z"]
check(dz.shape == (6, cfg.latent) and np.allclose(dz[0:3, 2] - mu_all[5][2], [-3, 0, 3], atol=1e-5)
      and np.allclose(dz[3:6, 0] - mu_all[5][0], [-3, 0, 3], atol=1e-5), "--dims 2,0 rows")
check(png(t + "/dims.png").shape == (2 * 13 - 1, 3 * 13 - 1), "dims.png size")

# The map of the plane: z1 to the right, z2 upwards, over [-2, 2]^2.
mp = np.load(t + "/map.npz")["z"].reshape(5, 5, 2)
g = np.linspace(-2, 2, 5)
close(mp[..., 0], np.tile(g, (5, 1)), "map z1 grows to the right", atol=1e-6)
close(mp[..., 1], np.tile(g[::-1, None], (1, 5)), "map z2 grows upwards", atol=1e-6)
check(png(t + "/map.png").shape == (5 * 13 - 1, 5 * 13 - 1), "map.png size")
raise SystemExit(1 if failures else 0)
EOF

# Without a validation set the epoch records say null.
expect_rc 0 "$BIN" train "$T/tiny.ini" train.epochs=1 data.validation=0 output.dir="$T/run0" \
    output.images=0 --device cpu
[ "$(json_field "$T/run0/metrics.jsonl" recon_mse epoch)" = "None" ] ||
    fail "recon_mse without a validation set: $(json_field "$T/run0/metrics.jsonl" recon_mse epoch)"
expect_rc 1 "$BIN" encode "$T/run0/model.safetensors" --device cpu --set valid --out "$T/v0.npz"
expect_one_line_error "the checkpoint's run has no validation set (data.validation = 0)"

# --- float32 data outside [0, 1] (Gaussian likelihood): the error on the data's range ----------
"$py" - "$T" <<'EOF'
import gzip, sys
import numpy as np
t = sys.argv[1]
for split in ("train", "t10k"):
    raw = gzip.open("%s/data/%s-images-idx3-ubyte.gz" % (t, split)).read()
    x = np.frombuffer(raw[16:], np.uint8).reshape(-1, 12, 12).astype(np.float32)
    np.save("%s/data/%s-wide.npy" % (t, split), x * np.float32(3.0 / 255.0) - np.float32(1.0))
EOF
expect_rc 0 "$BIN" train "$T/tiny.ini" train.epochs=1 output.dir="$T/runf" output.images=0 \
    data.train_images="$T/data/train-wide.npy" data.train_labels= \
    data.test_images="$T/data/t10k-wide.npy" data.test_labels= data.binarize=none \
    model.likelihood=gaussian --device cpu
expect_rc 0 "$BIN" eval "$T/runf/model.safetensors" --device cpu --samples 1 --json "$T/evalf.json"
expect_rc 0 "$BIN" interpolate "$T/runf/model.safetensors" --device cpu --from 0 --to 1 \
    --steps 3 --scale 1 --out "$T/f.png" --npz "$T/f.npz"
PYTHONPATH="$src/bench/peers" "$py" - "$T" <<'EOF'
import json, sys
import numpy as np
import torch
import torch_vae
t = sys.argv[1]
model, cfg, meta, _, _ = torch_vae.load_checkpoint(t + "/runf/model.safetensors",
                                                   dtype=torch.float64)
# The data's range, recorded as the checkpoint's input_range: both sets' min and max.
x_all = [np.load(t + "/data/%s-wide.npy" % s) for s in ("train", "t10k")]
lo = float(min(a.min() for a in x_all))
hi = float(max(a.max() for a in x_all))
got = [float(v) for v in meta.get("input_range", "nan,nan").split(",")]
x = x_all[1].reshape(200, -1).astype(np.float64)
with torch.no_grad():
    mu, _ = model.encode(torch.from_numpy(x))
    xm = model.decode(mu).numpy()  # Gaussian means
mse = float(np.mean((np.clip((xm - lo) / (hi - lo), 0, 1) - (x - lo) / (hi - lo)) ** 2))
ev = json.load(open(t + "/evalf.json"))
ok = np.allclose(got, [lo, hi], atol=1e-6) and abs(ev["recon_mse"] - mse) <= 1e-5 * mse and \
    abs(ev["recon_psnr"] - 10 * np.log10(1 / mse)) <= 1e-5 * abs(ev["recon_psnr"])
print("cli_latents: float data: input_range %s, recon_mse %.8g vs numpy %.8g%s"
      % (got, ev["recon_mse"], mse, "" if ok else "  <-- FAIL"))
f = np.load(t + "/f.npz")
with torch.no_grad():
    want = model.decode(torch.from_numpy(f["z"].astype(np.float64))).numpy()
ok2 = np.allclose(f["x"], want, atol=2e-5, rtol=1e-5)
print("cli_latents: float data: interpolate's x are the decoder's means%s"
      % ("" if ok2 else "  <-- FAIL"))
raise SystemExit(0 if ok and ok2 else 1)
EOF

# --- errors -------------------------------------------------------------------------------------
expect_rc 2 "$BIN" encode
expect_one_line_error "missing CHECKPOINT"
expect_rc 2 "$BIN" encode "$CK" --set bogus
expect_one_line_error "--set: expected test, train or valid, got 'bogus'"
expect_rc 2 "$BIN" encode "$CK" --limit 0
expect_one_line_error "--limit"
expect_rc 1 "$BIN" encode "$T/nothing.safetensors" --device cpu
expect_one_line_error "$T/nothing.safetensors"
expect_rc 1 "$BIN" encode "$CK" --device cpu --out "$T/nowhere/x.npz"
expect_error_after_start "$T/nowhere/x.npz"
expect_rc 1 "$BIN" encode "$CK" --device cpu --set valid --data-dir "$T/nowhere"
expect_one_line_error "$T/nowhere"
expect_rc 1 "$BIN" encode "$T/run2/model.safetensors" --device cpu --set valid \
    --test-images "$T/run/config.ini"
expect_one_line_error "config.ini"
expect_rc 2 "$BIN" interpolate "$CK" --device cpu --from 1
expect_one_line_error "missing --from I and --to J"
expect_rc 2 "$BIN" interpolate "$CK" --device cpu --from 1 --to 200
expect_error_after_start "--to 200: the test set has 200 examples (0..199)"
expect_rc 2 "$BIN" interpolate "$CK" --device cpu --from -1 --to 2
expect_one_line_error "--from"
expect_rc 2 "$BIN" interpolate "$CK" --device cpu --from 0 --to 2 --steps 1
expect_one_line_error "--steps: expected an integer in [2, 1024], got '1'"
expect_rc 2 "$BIN" traverse "$CK" --device cpu --example 200
expect_error_after_start "--example 200: the test set has 200 examples (0..199)"
expect_rc 2 "$BIN" traverse "$CK" --device cpu --set valid --example 100
expect_error_after_start "--example 100: the valid set has 100 examples (0..99)"
expect_rc 2 "$BIN" traverse "$CK" --device cpu --dims 4
expect_error_after_start "--dims: expected distinct dimensions in [0, 3]"
expect_rc 2 "$BIN" traverse "$CK" --device cpu --dims 1,1
expect_error_after_start "--dims"
expect_rc 2 "$BIN" traverse "$CK" --device cpu --range -1
expect_one_line_error "--range: expected a number"
expect_rc 2 "$BIN" traverse "$CK" --device cpu --range nan
expect_one_line_error "--range: expected a number"
expect_rc 2 "$BIN" traverse "$CK" --device cpu --scale 17
expect_one_line_error "--scale: expected an integer in [1, 16]"
expect_rc 2 "$BIN" traverse "$CK" --map --dims 0
expect_one_line_error "drop --dims"
expect_rc 2 "$BIN" traverse "$CK" "$CK"
expect_one_line_error "one checkpoint only"
for c in encode traverse interpolate; do
    expect_rc 0 "$BIN" "$c" --help
    expect_out "usage: cuvae $c CHECKPOINT"
    expect_rc 0 "$BIN" --help
    expect_out "$c"
done
echo "$NAME: ok"
