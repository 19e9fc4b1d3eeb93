"""Run a command in its own process group and kill the whole group on timeout.

`subprocess.run(timeout=...)` kills only the direct child; torchrun's worker processes would
be left running (and holding their port) after a hung test.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path


def run_group(cmd: list[str], *, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """Run `cmd` as the leader of a new process group; the result's `pid` is the group's id."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"{cmd[:6]} timed out after {timeout} s:\n{err[-3000:]}") from None
    result = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    result.pid = proc.pid
    return result


def live_group_members(pgid: int) -> list[int]:
    """PIDs of processes in group `pgid` that are still running (not zombies), from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)"
        except OSError:  # the process ended meanwhile
            continue
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in ("Z", "X"):
            members.append(int(stat.parent.name))
    return members
