"""models/pruning_recall.py: the recall and distractor shares it reports are those of the selections."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from hippo_trt.models.pruning_recall import KEEPS, METHODS, format_table, recall_table, token_labels
from hippo_trt.testing.demo_pair import held_out_samples
from hippo_trt.testing.synthetic import DISTRACTOR_CLASS


class _Pipeline:
    """Keeps, per method: every shape token ('attention'), every distractor token ('local'), else the first 3."""

    def __init__(self):
        self.labels = None

    def prepare(self, path, prompt):
        assert path.is_file() and prompt
        return path

    def generate(self, request, config):
        labels = self.labels
        chosen = {
            "attention": np.flatnonzero((labels > 0) & (labels != DISTRACTOR_CLASS)),
            "local": np.flatnonzero(labels == DISTRACTOR_CLASS),
        }.get(config.prune, np.arange(3))
        return SimpleNamespace(stats={"draft_kept": chosen.tolist()})


def test_recall_and_distractor_shares_follow_the_selection(tmp_path, monkeypatch):
    samples = [s for s in held_out_samples(12) if s.scene.distractors][:3]
    pipeline = _Pipeline()
    real = token_labels

    def labels_of(sample):  # the pipeline's selection sees the clip being scored
        pipeline.labels = real(sample)
        return pipeline.labels

    monkeypatch.setattr("hippo_trt.models.pruning_recall.token_labels", labels_of)
    table = recall_table(pipeline, samples, tmp_path)
    assert set(table) == {(m, k) for m in METHODS for k in KEEPS}
    for keep in KEEPS:
        assert table["attention", keep] == (1.0, 1.0, 0.0)
        assert table["local", keep] == (0.0, 0.0, 1.0)
    assert "| attention | 100.0% / 100% / 0% |" in format_table(table, len(samples))
