"""LeadScorer: batch equals single, chunking, and the bounded tenant-keyed cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.common.scoring import LeadFeatures, LeadScorer, ScoreCache
from services.ml import datagen


def test_batch_equals_single(scorer: LeadScorer, leads: list[LeadFeatures]) -> None:
    batch = scorer.score_batch(leads)
    single = [scorer.score(lead) for lead in leads]
    assert batch == pytest.approx(single, abs=1e-12)
    assert all(0.0 <= s <= 1.0 for s in batch)
    assert len(set(batch)) > 50  # real, lead-dependent scores


def test_chunk_size_does_not_change_scores(artifact_path: Path, leads: list[LeadFeatures]) -> None:
    small = LeadScorer.load(str(artifact_path), cache_size=0, batch_size=3)
    large = LeadScorer.load(str(artifact_path), cache_size=0, batch_size=1000)
    assert small.score_batch(leads) == pytest.approx(large.score_batch(leads), abs=1e-12)


def test_cached_and_uncached_scores_agree(scorer: LeadScorer, leads: list[LeadFeatures]) -> None:
    uncached = scorer.score_batch(leads[:5])
    first = scorer.score_batch(leads[:5], tenant_id="t1")
    second = scorer.score_batch(leads[:5], tenant_id="t1")
    assert first == uncached
    assert second == uncached
    stats = scorer.cache.stats()
    assert (stats.hits, stats.misses, stats.size) == (5, 5, 5)


def test_mixed_hits_and_misses_keep_input_order(
    scorer: LeadScorer, leads: list[LeadFeatures]
) -> None:
    expected = scorer.score_batch(leads[:6])
    scorer.score_batch([leads[1], leads[4]], tenant_id="t1")
    assert scorer.score_batch(leads[:6], tenant_id="t1") == expected
    assert scorer.cache.stats().hits == 2


def test_cache_is_bounded(scorer: LeadScorer, leads: list[LeadFeatures]) -> None:
    scorer.score_batch(leads, tenant_id="t1")
    stats = scorer.cache.stats()
    assert stats.capacity == 10
    assert stats.size == 10
    assert stats.misses == len(leads)


def test_cache_evicts_least_recently_used() -> None:
    cache = ScoreCache(2)
    cache.put_many([("a", 0.1), ("b", 0.2)])
    assert cache.get_many(["a"]) == [0.1]  # "a" is now the most recent
    cache.put_many([("c", 0.3)])
    assert cache.get_many(["a", "b", "c"]) == [0.1, None, 0.3]


def test_tenants_never_share_entries(scorer: LeadScorer, leads: list[LeadFeatures]) -> None:
    lead = leads[0]
    scorer.score(lead, tenant_id="tenant-a")
    scorer.score(lead, tenant_id="tenant-b")
    stats = scorer.cache.stats()
    assert (stats.hits, stats.misses, stats.size) == (0, 2, 2)
    scorer.score(lead, tenant_id="tenant-a")
    assert scorer.cache.stats().hits == 1


def test_no_tenant_bypasses_the_cache(scorer: LeadScorer, leads: list[LeadFeatures]) -> None:
    scorer.score_batch(leads[:3])
    stats = scorer.cache.stats()
    assert (stats.hits, stats.misses, stats.size) == (0, 0, 0)


def test_zero_capacity_disables_caching(artifact_path: Path, leads: list[LeadFeatures]) -> None:
    scorer = LeadScorer.load(str(artifact_path), cache_size=0)
    scorer.score(leads[0], tenant_id="t1")
    scorer.score(leads[0], tenant_id="t1")
    stats = scorer.cache.stats()
    assert (stats.hits, stats.misses, stats.size) == (0, 2, 0)


def test_empty_batch_scores_nothing(scorer: LeadScorer) -> None:
    assert scorer.score_batch([], tenant_id="t1") == []


def test_invalid_sizes_are_refused(artifact_path: Path) -> None:
    with pytest.raises(ValueError, match="capacity must be >= 0"):
        LeadScorer.load(str(artifact_path), cache_size=-1)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        LeadScorer.load(str(artifact_path), cache_size=1, batch_size=0)


def test_scores_rank_leads_by_the_ground_truth(scorer: LeadScorer) -> None:
    data = datagen.generate(500, seed=123)
    scores = np.asarray(scorer.score_rows([tuple(row) for row in data.x]))
    # Spearman rank correlation with the generator's true log-odds.
    ranks = np.argsort(np.argsort(scores)), np.argsort(np.argsort(data.true_logit))
    assert np.corrcoef(*ranks)[0, 1] > 0.8
