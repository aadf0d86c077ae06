#!/usr/bin/env bash
# The JAX peer computes cuvae's model: bench/peers/jax_vae.py's loss and Adam against
# torch_vae.py's on the same parameters (cuvae's initialisation), batch and noise. The loss must
# agree to 1e-5 relative and, after two Adam steps with the same gradient, all but a few
# parameters (those whose gradient is near Adam's eps, where rounding decides) to 1e-5.
# Needs a Python that imports torch and one that imports jax (bench/.venv-jax, which
# bench/run_peers.py makes); skipped (77) otherwise. $1 (the cuvae binary) is not used.
set -euo pipefail
NAME=cli_peers_jax_torch
src=${CUVAE_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
source "$(dirname "$0")/lib_python.sh"
need_python "torch,numpy"
jpy=""
for cand in "$src/bench/.venv-jax/bin/python" python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c "import jax" >/dev/null 2>&1; then
        jpy=$cand
        break
    fi
done
[ -n "$jpy" ] || { echo "$NAME: skipped: no Python imports jax (bench/run_peers.py installs it)"; exit 77; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

PYTHONPATH="$src/bench/peers" "$jpy" - "$T/jax.npz" <<'PY'
import sys
import numpy as np
out_path = sys.argv[1]
sys.argv = ["jax_vae"]  # jax_vae reads --threads from sys.argv only when run as a script
import jax
import jax.numpy as jnp
import jax_vae
import philox
from vae_common import Config

cfg = Config()
init = dict(philox.model_init(cfg.seed, 784, cfg.hidden, cfg.latent))
n = len(cfg.hidden) + 1
params = {part: [(jnp.asarray(init["%s.%d.weight" % (part, i)]),
                  jnp.asarray(init["%s.%d.bias" % (part, i)])) for i in range(n)]
          for part in ("encoder", "decoder")}
x = (np.random.default_rng(0).random((64, 784)) < 0.3).astype(np.uint8) * 255
key = jax.random.PRNGKey(7)
eps = np.asarray(jax.random.normal(jax.random.split(key)[1], (64, cfg.latent), jnp.float32))
loss_fn = jax_vae.make_loss(cfg, "fp32", False)  # no binarization: x is 0/255 already
(loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, jnp.asarray(x), key, 1.0)
opt_init, update, _ = jax_vae.make_optimizer(cfg)
state = opt_init(params)
p, state = update(grads, state, params)
p, state = update(grads, state, p)
out = {"x": x, "eps": eps, "loss": np.float64(loss)}
for part in ("encoder", "decoder"):
    for i, (w, b) in enumerate(p[part]):
        out["%s.%d.weight" % (part, i)], out["%s.%d.bias" % (part, i)] = np.asarray(w), np.asarray(b)
np.savez(out_path, **out)
PY

PYTHONPATH="$src/bench/peers" "$py" - "$T/jax.npz" <<'PY'
import sys
import numpy as np
import torch
import torch_vae
from vae_common import Config

d = np.load(sys.argv[1])
cfg = Config()
model = torch_vae.make_model(cfg, 784, torch.device("cpu"), init="cuvae")
opt = torch_vae.make_optimizer(cfg, model)
x = torch.from_numpy(d["x"].astype(np.float32) / 255)
eps = torch.from_numpy(d["eps"])
mu, logvar = model.encode(x)
loss, _ = torch_vae.batch_loss_parts(model, x, mu, logvar, eps, 1.0, 0.0)
loss.backward()
rel = abs(float(loss) - float(d["loss"])) / abs(float(loss))
grads = [q.grad.clone() for q in model.parameters()]
opt.step()
for q, g in zip(model.parameters(), grads):  # the same gradient again, as the JAX side
    q.grad.copy_(g)
opt.step()
off = total = 0
for k, v in model.state_dict().items():
    diff = np.abs(v.numpy() - d[k])
    off += int((diff > 1e-5).sum())
    total += diff.size
print("loss torch %.6f jax %.6f (relative %.2e); parameters off by > 1e-5 after two Adam steps: "
      "%d of %d" % (float(loss), float(d["loss"]), rel, off, total))
if rel > 1e-5 or off > total * 1e-4:
    print("FAIL: the JAX peer's model, loss or Adam differs from the PyTorch peer's")
    sys.exit(1)
PY
