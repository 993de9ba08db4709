"""This process's peak resident memory, as the daemon and the benchmarks report it."""

import resource


def peak_rss_mb(status_path="/proc/self/status"):
    """Peak resident set size of this process's own memory (MB): VmHWM from ``/proc/self/status``.

    Not ``getrusage().ru_maxrss``: Linux carries that across ``execve``, so a daemon started by a large parent
    (a test runner holding TensorFlow, an IDE) reported the parent's peak, 1,260 MB once against its own 140.
    VmHWM belongs to the address space that ``execve`` made new. Where the file or its line is missing, the
    ``ru_maxrss`` figure (kilobytes on Linux) is returned, divided by 1024.
    """
    try:
        with open(status_path) as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
