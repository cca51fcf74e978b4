"""Progress of long work in the project's scripts (training, conversion, test models), shown
the way troupe's own commands show it (runtime/progress.hpp): a bar redrawn in place on a
terminal, plain time-stamped lines at each tenth (or every 10 s) when stderr is a log or a
pipe. TROUPE_PROGRESS=bar|lines|off overrides the choice.

    bar = Progress("target", total=steps, start=resumed_step)
    for step in ...:
        bar.update(step, "loss 2.31 1200 tok/s")
    bar.finish()
"""
import os
import sys
import time


def style(stream=sys.stderr):
    v = os.environ.get("TROUPE_PROGRESS", "")
    if v in ("off", "0"):
        return "off"
    if v in ("bar", "lines"):
        return v
    return "bar" if stream.isatty() else "lines"


class Progress:
    def __init__(self, name, total, start=0, unit="", stream=sys.stderr):
        self.name, self.total, self.start, self.unit, self.stream = name, total, start, unit, stream
        self.t0 = self.last = time.time()
        self.style = style(stream)
        self.tenth = -1
        self.done = start
        self.finished = False

    def _line(self, extra):
        frac = min(1.0, self.done / self.total) if self.total else 0.0
        el = time.time() - self.t0
        rate = (self.done - self.start) / el if el > 0 else 0
        eta = (self.total - self.done) / rate if rate > 0 and self.total else 0
        unit = f" {self.unit}" if self.unit else ""
        bar = "#" * int(28 * frac) + "." * (28 - int(28 * frac))
        return frac, (f"{self.name} [{bar}] {100 * frac:5.1f}% {self.done}/{self.total}{unit}"
                      f"{' ' + extra if extra else ''} eta {eta / 60:.1f} min")

    def update(self, done, extra=""):
        self.done = done
        if self.style == "off" or self.finished:
            return
        frac, line = self._line(extra)
        now = time.time()
        if self.style == "bar":
            if now - self.last >= 0.1 or done >= self.total:
                self.last = now
                print("\r" + line + "\x1b[K", end="", file=self.stream, flush=True)
            return
        tenth = int(10 * frac)
        if tenth > self.tenth or now - self.last >= 10:
            self.tenth, self.last = max(self.tenth, tenth), now
            print(time.strftime("%H:%M:%S"), line, file=self.stream, flush=True)

    def finish(self, extra=""):
        if self.finished:
            return
        if self.total:
            self.done = max(self.done, self.total)
        if self.style == "bar":
            self.update(self.done, extra)
            print(file=self.stream, flush=True)
        elif self.style == "lines":
            unit = f" {self.unit}" if self.unit else ""
            print(time.strftime("%H:%M:%S"), f"{self.name}: done, {self.done}{unit} in {time.time() - self.t0:.1f} s"
                  f"{', ' + extra if extra else ''}", file=self.stream, flush=True)
        self.finished = True
