"""Replica autoscaling on in-flight requests (queued + running), with two windows.

Pure logic, no processes: the engine feeds samples and asks for a recommendation. Scaling up
follows the average load of a short window (seconds); scaling down follows the peak of a long
window (a minute by default), so a burst scales out quickly and a lull does not flap.
Cortex v0.10 scaled on CPU through a Kubernetes HPA (``target_cpu_utilization``); a replica
that runs one request at a time is better sized by its queue.
"""

from __future__ import annotations

import math
from collections import deque

# The sample of a look that found nothing in flight though requests came since the last one: not
# idle (a window of them keeps one replica), and too small to count towards scaling up.
ARRIVED = 1e-3


class Autoscaler:
    """Recommends a replica count for one API from in-flight request samples."""

    def __init__(self, target: float = 1.0, up_window: float = 5.0, down_window: float = 60.0) -> None:
        self.target = target
        self.up_window = up_window
        self.down_window = down_window
        self._samples: deque[tuple[float, float]] = deque()
        self._since: float | None = None
        self._busy = 0  # samples above 0 among ``_samples``: with none, no window is read

    def configure(self, target: float, up_window: float, down_window: float) -> None:
        """New settings (a redeploy changed ``autoscaling:``); the samples seen so far stay."""
        self.target, self.up_window, self.down_window = target, up_window, down_window

    def forget(self) -> None:
        """Start afresh: no samples, and no scaling down before a whole window of them."""
        self._samples.clear()
        self._since = None
        self._busy = 0

    def observe(self, now: float, in_flight: int, arrived: bool = False) -> None:
        """Record the in-flight count at time ``now`` (monotonic seconds); ``arrived``: requests
        came since the last sample. Requests of a few milliseconds each, several a second, are
        seldom in flight at a look: counted as none, an API of ``min_replicas: 0`` was scaled to
        zero under them and started again at the next one, a cold start every window."""
        if self._since is None:
            self._since = now
        sample = in_flight or (ARRIVED if arrived else 0)
        self._samples.append((now, sample))
        self._busy += sample > 0
        horizon = now - max(self.up_window, self.down_window)
        while self._samples and self._samples[0][0] < horizon:
            self._busy -= self._samples.popleft()[1] > 0

    def _within(self, now: float, window: float) -> list[float]:
        return [count for at, count in self._samples if now - at <= window]

    def recommend(self, now: float, current: int, lowest: int, highest: int) -> int:
        """The replica count to run now, between ``lowest`` and ``highest``."""
        if not self._busy:  # idle: every window holds zeros (read each tick, 158 APIs took 6% of a core)
            samples = self._samples
            heard = bool(samples) and now - samples[-1][0] <= self.down_window
            quiet = self._since is not None and now - self._since >= self.down_window
            return max(lowest, min(highest, 0 if heard and quiet else current))
        recent = self._within(now, self.up_window)
        if current == 0 and recent and recent[-1] > 0:
            return max(1, lowest)  # scale from zero at the first request
        wanted = current
        if recent:
            up = math.ceil(sum(recent) / len(recent) / self.target)
            if up > current:
                wanted = up
        long = self._within(now, self.down_window)
        watched = self._since is not None and now - self._since >= self.down_window
        if wanted == current and long and watched:  # a full window of history says: fewer
            down = math.ceil(max(long) / self.target)
            if down < current:
                wanted = down
        return max(lowest, min(highest, wanted))
