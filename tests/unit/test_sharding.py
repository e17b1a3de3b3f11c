"""Ready for a sharded cluster: every unique index can be kept when its collection is sharded,
and the compose files describe clusters billing can use (checked here without Docker)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from billing.adapters import schema

ROOT = Path(__file__).resolve().parents[2]


def test_every_collection_has_a_documented_place() -> None:
    names = {c.name for c in schema.COLLECTIONS}
    assert set(schema.SHARD_KEYS) | set(schema.UNSHARDED) == names
    assert not set(schema.SHARD_KEYS) & set(schema.UNSHARDED)
    scaling = (ROOT / "docs" / "scaling.md").read_text()
    for name in names:
        assert f"`{name}`" in scaling, f"docs/scaling.md does not place {name}"


def test_every_unique_index_of_a_sharded_collection_starts_with_its_shard_key() -> None:
    # MongoDB refuses to shard a collection with a unique index not prefixed by the shard key
    # (and to create one later): a new index must not silently block sharding.
    for spec in schema.COLLECTIONS:
        key = schema.SHARD_KEYS.get(spec.name)
        if key is None:
            continue
        for index in spec.indexes:
            if index.unique:
                assert index.keys[:len(key)] == list(key.items()), \
                    f"{spec.name}.{index.name} is unique but not prefixed by the shard key {key}"


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return document


def test_the_sharded_compose_file_describes_a_usable_cluster() -> None:
    services = load("docker-compose.sharded.yml")["services"]
    assert {"config", "shard-a", "shard-b", "init", "mongos"} <= set(services)
    assert "--configsvr" in services["config"]["command"]
    for shard in ("shard-a", "shard-b"):
        assert "--shardsvr" in services[shard]["command"]
        assert "healthcheck" in services[shard]
    mongos = services["mongos"]
    assert mongos["command"][:3] == ["mongos", "--configdb", "cfg/config:27017"]
    assert all(port.startswith("127.0.0.1:") for port in mongos["ports"])
    assert "listShards" in " ".join(mongos["healthcheck"]["test"])
    assert set(mongos["depends_on"]) == {"config", "init"}
    script = services["init"]["entrypoint"][-1]
    assert "rs.initiate" in script and script.count("sh.addShard") == 2


def test_the_replica_set_compose_file_runs_setup_before_the_job() -> None:
    services = load("docker-compose.yml")["services"]
    assert "isWritablePrimary" in " ".join(services["mongo"]["healthcheck"]["test"])
    assert "billing setup &&" in " ".join(services["app"]["command"])
