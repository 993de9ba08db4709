"""A fixed validation pool beside a replaced training pool (fit --validation-cache), and training.seen_fresh."""

import csv

import pytest

pytest.importorskip("tensorflow", reason="the training extra (tensorflow-cpu) is not installed")

from training.cache import CacheSpec, build_cache  # noqa: E402
from training.seen_fresh import labels, main, parse_set, table  # noqa: E402
from training.train import ExampleStore, TrainingError, fit  # noqa: E402


def quiet(*_):
    pass


def cache(corpus, folder, split, seed, shards=1, examples=2):
    build_cache(CacheSpec(str(corpus), split, shards=shards, examples_per_shard=examples, seconds=1.0, seed=seed,
                          simulated_rooms=1), folder, workers=1, say=quiet)
    return folder


def test_a_run_validates_on_the_validation_cache_when_its_training_pool_has_none(mini_corpus, tmp_path):
    kept = cache(mini_corpus, tmp_path / "kept", "validation", seed=3)
    fresh = cache(mini_corpus, tmp_path / "fresh", "train", seed=4)
    with pytest.raises(TrainingError, match="no validation shards"):
        fit(fresh, tmp_path / "refused", size="tiny", epochs=1, batch_size=2, say=quiet)
    best, card = fit(fresh, tmp_path / "run", size="tiny", epochs=1, batch_size=2, validation_cache=[kept],
                     say=quiet)
    assert card["cache"] == str(fresh) and card["validation_cache"] == [str(kept)]
    with (tmp_path / "run" / "history.csv").open() as handle:
        val_loss = float(next(csv.DictReader(handle))["val_loss"])
    # The loss the run validated on is the validation cache's, recomputed from the saved model.
    scored = table("tiny", [("kept", kept, "validation", None)], [best], say=quiet)[str(best)]["kept"]
    assert scored["loss"] == pytest.approx(val_loss, rel=1e-3)


def test_seen_fresh_tells_memorised_examples_from_fresh_ones_of_the_same_recipe(mini_corpus, tmp_path):
    seen = cache(mini_corpus, tmp_path / "seen", "train", seed=5)
    cache(mini_corpus, seen, "validation", seed=6)
    fresh = cache(mini_corpus, tmp_path / "fresh", "train", seed=7)
    start, _ = fit(seen, tmp_path / "start", size="tiny", epochs=1, batch_size=2, learning_rate=1e-9, say=quiet)
    fit(seen, tmp_path / "run", size="tiny", epochs=60, batch_size=2, learning_rate=1e-2, say=quiet)
    memorised = tmp_path / "run" / "resume" / "latest.weights.h5"      # the last epoch's state, not the best
    sets = [parse_set(f"seen={seen}:train"), parse_set(f"fresh={fresh}:train:1")]
    lines = []
    results = table("tiny", sets, [start, memorised], say=lines.append)
    ratio = {name: results[str(name)]["seen"]["gain"] / results[str(name)]["fresh"]["gain"]
             for name in (start, memorised)}
    assert results[str(memorised)]["seen"]["gain"] < 0.5 * results[str(start)]["seen"]["gain"]
    assert ratio[memorised] < 0.5 * ratio[start]     # it learnt the two examples far better than the recipe
    assert len(lines) == 4 and "seen (2 ex.)" in lines[0] and "fresh (2 ex.)" in lines[0]


def test_a_set_limits_its_shards_and_bad_sets_are_refused_with_an_example(mini_corpus, tmp_path, capsys):
    two = cache(mini_corpus, tmp_path / "two", "train", seed=8, shards=2, examples=1)
    assert ExampleStore(two, "train", say=quiet, n_features=70).count == 2
    assert ExampleStore(two, "train", say=quiet, n_features=70, shards=1).count == 1
    assert parse_set(f"a={two}:train:1") == ("a", two, "train", 1)
    for bad, why in (("a", "NAME=DIR:SPLIT"), (f"a={two}", "NAME=DIR:SPLIT"), (f"a={two}:test", "train or"),
                     (f"a={two}:train:0", "whole number"), (f"a={two}:train:x", "whole number")):
        with pytest.raises(TrainingError, match=why):
            parse_set(bad)
    assert main(["--size", "tiny", "--set", f"a={two}:train", "--set", f"a={two}:train", "x.keras"]) == 2
    assert "given twice" in capsys.readouterr().err


def test_checkpoints_of_the_same_name_are_labelled_by_their_folders():
    assert labels(["runs/a/epochs/e165.weights.h5", "runs/b/epochs/e165.weights.h5", "x/e1.keras"]) == [
        "a/epochs/e165.weights.h5", "b/epochs/e165.weights.h5", "x/e1.keras"]
    assert labels(["a/e1.keras", "b/e2.keras"]) == ["e1.keras", "e2.keras"]
