"""The pipeline's report of skipped records and truncated captions."""

import logging
import threading

logger = logging.getLogger(__name__)

# What an epoch's counts hold: records skipped for an unusable image, records skipped for want of a
# usable caption (when text is wanted), captions kept truncated to the tokenizer's length.
KINDS = ("image", "caption", "truncated")


class SkipReport:
    """Counts skipped records and truncated captions per epoch; logs each skipped record once and
    one summary per epoch.

    Each reader (the training process, or each grain worker process) keeps its own report. An
    epoch's summary is logged when the reader first touches a record of a later epoch.
    """

    def __init__(self, epoch_length, dataset_name):
        self.epoch_length = epoch_length
        self.dataset_name = dataset_name
        self.counts = {}  # epoch -> {kind: count}
        self._named = set()
        self._summarized_below = 0
        self._lock = threading.Lock()

    def __getstate__(self):
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _epoch(self, epoch):
        return self.counts.setdefault(epoch, dict.fromkeys(KINDS, 0))

    def skip(self, epoch, name, reason, kind="image"):
        """Counts a skipped record (kind "image" or "caption"); fails when the whole shard is."""
        with self._lock:
            counts = self._epoch(epoch)
            counts[kind] += 1
            first_time = name not in self._named
            self._named.add(name)
            if counts["image"] + counts["caption"] == self.epoch_length:
                raise ValueError(
                    f"Every one of the {self.epoch_length} images in this shard of "
                    f"{self.dataset_name} is unusable (last: {name}: {reason})."
                )
        if first_time:
            logger.warning("Skipping image %s of %s: %s.", name, self.dataset_name, reason)

    def truncate(self, epoch, count):
        """Counts `count` captions truncated to the tokenizer's length (and kept)."""
        if count:
            with self._lock:
                self._epoch(epoch)["truncated"] += count

    def summarize_before(self, epoch):
        """Logs the summary of every epoch before `epoch` not summarized yet."""
        with self._lock:
            finished = [e for e in sorted(self.counts) if self._summarized_below <= e < epoch]
            self._summarized_below = max(self._summarized_below, epoch)
        for done in finished:
            logger.warning("Epoch %d of %s: %s.", done, self.dataset_name,
                           self._summary(self.counts[done]))

    def _summary(self, counts):
        parts = []
        skipped = counts["image"] + counts["caption"]
        if skipped:
            parts.append(f"skipped {skipped} unusable image(s) of the {self.epoch_length} in "
                         "this shard")
            if counts["caption"]:
                parts[-1] += f" ({counts['caption']} for want of a usable caption)"
        if counts["truncated"]:
            parts.append(f"kept {counts['truncated']} caption(s) truncated to the tokenizer's "
                         "max_length")
        return "; ".join(parts)
