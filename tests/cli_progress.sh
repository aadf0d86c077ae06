#!/usr/bin/env bash
# The progress bar on a terminal: `cuvae train` runs on a pseudo-terminal of 80 columns (with
# COLUMNS=200 in its environment, which the terminal's own size overrides) and then of 40. Every
# redraw of the bar (the text after each "\r\033[K") is at most 79 (39) characters, so the
# terminal never wraps it into copies; and with train.log_every above the run's steps (no metric
# read until the end) the bar shows a loss, refreshed from the backend's running sums about twice
# a second, not "-": when the run took over 1.5 s, the bar showed at least two different losses.
set -euo pipefail
NAME=cli_progress
source "$(dirname "$0")/lib_cli.sh"

make_data
make_config "$T/p.ini" "$T/run"

for cols in 80 40; do
    rm -rf "$T/run"
    python3 - "$cols" "$T/tty.out" "$BIN" train "$T/p.ini" train.epochs=6 train.log_every=1000 \
        output.images=0 <<'EOF' || fail "the run on a $cols-column terminal failed"
import fcntl, os, pty, struct, sys, termios, time
cols, out, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
t0 = time.monotonic()
pid, fd = pty.fork()
if pid == 0:
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
    os.environ["COLUMNS"] = "200"
    os.execv(argv[0], argv)
data = b""
while True:
    try:
        chunk = os.read(fd, 65536)
    except OSError:
        break
    if not chunk:
        break
    data += chunk
_, status = os.waitpid(pid, 0)
open(out, "wb").write(data)
open(out + ".seconds", "w").write(str(time.monotonic() - t0))
sys.exit(os.waitstatus_to_exitcode(status))
EOF
    python3 - "$cols" "$T/tty.out" <<'EOF' || fail "the bar on a $cols-column terminal"
import re, sys
cols, text = int(sys.argv[1]), open(sys.argv[2], "rb").read().decode()
seconds = float(open(sys.argv[2] + ".seconds").read())
# A redraw is the text between two "\r\033[K"; one that ends in a newline is a permanent line
# (an epoch's summary, a message), which may wrap.
draws = [seg for seg in text.split("\r\x1b[K")[1:] if seg and "\n" not in seg]
assert len(draws) >= 2, ("no bar drawn", text[:500])
long = [d for d in draws if len(d) > cols - 1]
assert not long, ("wider than the terminal", cols, long[:3])
losses = [m.group(1) for d in draws for m in [re.search(r" loss (\S+)", d)] if m]
assert losses and all(l != "-" for l in losses), ("a bar without a loss", draws[:5])
assert seconds < 1.5 or len(set(losses)) >= 2, ("the loss never changed", seconds, losses)
print(f"{len(draws)} draws in {seconds:.1f} s, widest {max(map(len, draws))}, "
      f"{len(set(losses))} losses: {losses[0]} .. {losses[-1]}")
EOF
done
echo "$NAME: ok"
