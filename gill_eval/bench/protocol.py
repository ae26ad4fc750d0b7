"""Protocol versions: which version of each benchmark's protocol a result was computed under.

Every result records the protocol version of its benchmark (``protocol_version``) and the version of the
generation inputs its images were made under (``generation_version``). When a protocol changes what a
score means (a reference resize, a sampler, a statistic), the version goes up, and ``report`` refuses
results from an earlier version rather than mixing them into a table: it names ``gill-eval bench score``
when only scoring changed since that result, and the full bench command when the images must be made
again. docs/protocols.md lists each version and what changed in it.
"""

from __future__ import annotations

from typing import Any

from gill_eval.bench.registry import ProtocolVersion, find
from gill_eval.errors import InputError

# Each benchmark declares its own version (BenchmarkSpec.protocol, gill_eval/bench/specs/): version 2
# is the parity fixes of docs/protocols.md, which changed every built-in benchmark's
# generation inputs too (GILL image inputs, VisDial text, the FID sampler, the retrieval query and candidates).
UNVERSIONED = ProtocolVersion(1, 1)  # results written before versions were recorded


def current(benchmark: str) -> ProtocolVersion:
    """The protocol version a new result of ``benchmark`` is computed under (1 when it is not installed)."""
    spec = find(benchmark)
    return spec.protocol if spec is not None else UNVERSIONED


def stamp(result: dict[str, Any]) -> None:
    """Record in ``result`` the current protocol and generation versions of its benchmark."""
    now = current(str(result.get("benchmark")))
    result.update(protocol_version=now.version, generation_version=now.generation)


def recorded(result: dict[str, Any]) -> ProtocolVersion:
    return ProtocolVersion(int(result.get("protocol_version", UNVERSIONED.version)),
                           int(result.get("generation_version", UNVERSIONED.generation)))


def rerun_command(result: dict[str, Any]) -> str:
    """The command that brings ``result`` up to the current protocol."""
    name = str(result.get("benchmark"))
    generation_dir = (result.get("generation") or {}).get("dir")
    if generation_dir and recorded(result).generation >= current(name).generation:
        return f"gill-eval bench score {generation_dir}"
    model = (result.get("model") or {}).get("name", "MODEL")
    context = str(result.get("context"))
    spec = find(name)
    seeds = result.get("seeds")
    seed_tail = " --seeds " + ",".join(str(s) for s in seeds) if seeds else ""
    if spec is not None and spec.cli_context is not None:  # a built-in with its own command and context option
        return f"gill-eval bench {name} --model {model} {spec.cli_context(context)}{seed_tail}"
    # any registered benchmark, plugins included, runs through `bench run NAME` with its context labels
    return f"gill-eval bench run {name} --model {model} --context {context}{seed_tail}"


def check_current(result: dict[str, Any], where: str) -> None:
    """Refuse a result computed under an earlier protocol of its benchmark, naming the rerun command."""
    name = str(result.get("benchmark"))
    have, want = recorded(result), current(name)
    if have.version < want.version:
        raise InputError(f"{where}: computed under {name} protocol v{have.version}, current is v{want.version} "
                         f"(docs/protocols.md); rerun `{rerun_command(result)}`")
