"""What the benchmark scripts say about the machine, and how they hand over their JSON. Standard
library only: bench/run_peers.py imports it too, under any Python."""

import json
import os
import platform


def cpu_model():
    """The CPU's model name from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_average():
    """The 1-minute load average when the benchmark ran (a busy machine times slower)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def emit_json(result, path=None):
    """The result as indented JSON: to `path` when given, else on stdout."""
    text = json.dumps(result, indent=2)
    if path:
        with open(path, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
