"""The memory this process may still use, so that what will not fit is refused in one line, not met as an
abort inside TensorFlow or numpy."""


def available():
    """Bytes this process may still allocate: the smaller of the machine's available memory and its cgroup's
    limit (Linux); None where the platform does not say."""
    limits = []
    try:
        with open("/proc/meminfo") as f:
            limits += [int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        if limit != "max":
            limits.append(int(limit) - used)
    except (OSError, ValueError):
        pass
    return min(limits) if limits else None
