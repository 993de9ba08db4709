"""training.cache.link_training_shards: part of a cache, pooled on its own, its shards stored once."""

import json

import pytest

from training.cache import CacheError, link_training_shards


def _cache(folder, promised, made=None, validation=1):
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"kind": "teacher", "train": {"shards": promised, "seed": 7},
                                                  "validation": {"shards": validation},
                                                  "labelling": {"train": {"cpu_s": 9.0}, "validation": {}}}))
    for index in range(promised if made is None else made):
        (folder / f"train-{index:05d}.npz").write_bytes(bytes([index]))
    for index in range(validation):
        (folder / f"validation-{index:05d}.npz").write_bytes(b"v")
    return folder


def test_the_first_shards_are_linked_with_a_meta_json_that_says_how_many(tmp_path):
    cache = _cache(tmp_path / "cache" / "teacher-v2", promised=5)
    out = link_training_shards(cache, tmp_path / "cache" / "teacher-v2-first3", 3, note="the first 3")
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "train-00000.npz", "train-00001.npz",
                                                     "train-00002.npz"]           # no validation shard
    assert all(p.is_symlink() and not p.readlink().is_absolute() for p in out.glob("*.npz"))
    assert (out / "train-00002.npz").read_bytes() == bytes([2])
    meta = json.loads((out / "meta.json").read_text())
    assert meta["train"] == {"shards": 3, "seed": 7} and meta["note"] == "the first 3" and meta["kind"] == "teacher"
    assert "validation" not in meta and meta["labelling"] == {}       # the whole cache's cost is not the part's
    every = link_training_shards(cache, tmp_path / "cache" / "teacher-v2-train")  # all of them, no note
    meta = json.loads((every / "meta.json").read_text())
    assert len(list(every.glob("train-*.npz"))) == 5 and meta["train"]["shards"] == 5 and "note" not in meta
    assert meta["labelling"] == {"train": {"cpu_s": 9.0}} and "validation" not in meta
    elsewhere = tmp_path / "elsewhere" / "deep"                 # DATA/links is a link to a folder elsewhere
    elsewhere.mkdir(parents=True)
    (tmp_path / "cache" / "links").symlink_to(elsewhere)
    linked = link_training_shards(cache, tmp_path / "cache" / "links" / "first1", 1)
    assert (linked / "train-00000.npz").read_bytes() == bytes([0])
    moved = tmp_path / "moved"                                  # relative links survive moving DATA
    (tmp_path / "cache").rename(moved)
    assert (moved / "teacher-v2-first3" / "train-00001.npz").read_bytes() == bytes([1])


def test_what_cannot_be_linked_is_refused_with_what_to_do(tmp_path):
    short = _cache(tmp_path / "short", promised=5, made=2)                       # an interrupted build
    with pytest.raises(CacheError, match="lacks 1 of the first 3 training shards .train-00002.npz.*delete that"):
        link_training_shards(short, tmp_path / "a", 3)
    with pytest.raises(CacheError, match="promises 5 training shards; 6 cannot be linked"):
        link_training_shards(short, tmp_path / "a", 6)
    with pytest.raises(CacheError, match="meta.json is missing"):
        link_training_shards(tmp_path / "nowhere", tmp_path / "a", 1)
    assert not (tmp_path / "a").exists() and not (tmp_path / "a.part").exists()
    full = _cache(tmp_path / "full", promised=2)
    (tmp_path / "b.part").mkdir()                                                # what an interrupted link left
    (tmp_path / "b.part" / "train-00000.npz").symlink_to(full / "train-00000.npz")
    link_training_shards(full, tmp_path / "b", 1)
    assert not (tmp_path / "b.part").exists() and (tmp_path / "b" / "meta.json").is_file()
    with pytest.raises(CacheError, match="exists; remove it"):
        link_training_shards(full, tmp_path / "b", 1)
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    with pytest.raises(CacheError, match="exists; remove it"):
        link_training_shards(full, tmp_path / "dangling", 1)
    for odd in ("data.npz", "sub"):                        # not what an interrupted linking leaves: kept, refused
        (tmp_path / "c.part").mkdir(exist_ok=True)
        (tmp_path / "c.part" / odd).mkdir() if odd == "sub" else (tmp_path / "c.part" / odd).write_text("x")
        with pytest.raises(CacheError, match=f"c.part holds {odd}, which no interrupted linking leaves"):
            link_training_shards(full, tmp_path / "c", 1)
        assert (tmp_path / "c.part" / odd).exists() and not (tmp_path / "c").exists()
        (tmp_path / "c.part" / odd).rmdir() if odd == "sub" else (tmp_path / "c.part" / odd).unlink()
    with pytest.raises(CacheError, match="True cannot be linked"):
        link_training_shards(full, tmp_path / "d", True)
