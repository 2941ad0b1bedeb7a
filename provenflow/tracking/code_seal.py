"""A run's code identity and its seal: what `provenflow reproduce` may execute.

Reproduction checks out the recorded commit, applies the recorded diff (bytes from the store) and
runs the recorded entry point with the recorded parameters. Whoever can write the ledger and the
store could otherwise make a reproducer execute code of their choosing (a diff that plants a
module). So the process that records a run seals its code identity with the signing key (as model
versions are sealed, provenflow.modeling.signing), and a reproducer verifies the seal with the
public key before it materialises anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from provenflow.errors import SignatureError
from provenflow.modeling import signing

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

DOMAIN = b"provenflow run code seal v1\n"


class RunRow(Protocol):
    id: str
    flow: str
    code_commit: str | None
    code_diff_hash: str | None
    code_entry: dict | None
    environment_hash: str | None
    parameters: dict


@dataclass(frozen=True)
class CodeIdentity:
    """What a run's code seal covers: everything reproduction reads to decide what to execute."""

    run_id: str
    flow: str
    commit: str | None
    diff_hash: str | None
    entry: dict | None
    environment_hash: str | None
    parameters: dict

    @classmethod
    def of(cls, run: RunRow) -> CodeIdentity:
        return cls(run.id, run.flow, run.code_commit, run.code_diff_hash, run.code_entry,
                   run.environment_hash, dict(run.parameters or {}))  # fmt: skip

    def message(self) -> bytes:
        fields: dict[str, Any] = {
            "run": self.run_id, "flow": self.flow, "commit": self.commit, "diff": self.diff_hash,
            "entry": self.entry, "environment": self.environment_hash, "parameters": self.parameters,
        }  # fmt: skip
        return DOMAIN + json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str).encode()


def seal(identity: CodeIdentity, key: signing.Key) -> str:
    return signing.seal_message(identity.message(), key)


def verified_parameters(run: RunRow, key: signing.Key) -> dict:
    """RUN's recorded parameters, once its seal verifies: a retrain reads again the source, query and
    Secret block a data run recorded, and a changed ledger row must not choose what it reads, with
    whose credentials (the seal covers the parameters)."""
    verify(CodeIdentity.of(run), run.code_seal, key)
    return dict(run.parameters)


def verify(identity: CodeIdentity, recorded: str | None, key: signing.Key) -> None:
    """Quietly when ``recorded`` seals ``identity``; else SignatureError, one line that says why."""
    run = identity.run_id
    if not recorded:
        raise SignatureError(
            f"run {run} has no code seal (recorded before provenflow sealed runs, without a signing key, or "
            "written outside provenflow); refusing to execute its recorded code. Check its commit and diff, "
            f"then seal it with: provenflow runs seal {run}"
        )
    problem = signing.check_message(identity.message(), recorded, key)
    if problem == "form":
        raise SignatureError(f"run {run} has a code seal in an unknown form; refusing to execute its recorded code")
    if problem == "key":
        raise SignatureError(
            f"run {run} was sealed with key {recorded.split(':')[1]}, but this machine's key ({key.source}) is "
            f"{key.id}; refusing to execute its recorded code. Give this machine the team's public key "
            "(PROVENFLOW_SIGNING_KEY=ed25519-public:…; see SECURITY.md)"
        )
    if problem == "mismatch":
        raise SignatureError(
            f"run {run}: its code seal does not match its commit, diff, entry point, environment and "
            "parameters, so its ledger record was changed after it was recorded; refusing to execute its "
            "recorded code"
        )


def seal_runs(session: Session, run_ids: list[str], key: signing.Key, replace: bool = False) -> list[tuple[str, str]]:
    """Seal recorded runs' code identities under ``key`` (``provenflow runs seal``): runs recorded before
    code seals, or re-sealing after a key rotation (a seal that verifies under a verify-only key).
    A seal that does not verify is kept, and nothing sealed, unless ``replace``. [(run id, outcome)]."""
    from provenflow.ledger.refs import resolve_run

    runs = [resolve_run(session, run_id) for run_id in run_ids]
    outcomes = []
    for run in runs:
        identity = CodeIdentity.of(run)
        outcome = "sealed"
        if run.code_seal:
            problem = signing.check_message(identity.message(), run.code_seal, key)
            if problem is None and run.code_seal.split(":")[1] == key.id:
                outcomes.append((run.id, "already sealed"))
                continue
            if problem is None:
                outcome = "re-sealed"
            elif replace:
                outcome = "replaced"
            else:
                raise SignatureError(
                    f"run {run.id} has a code seal that does not verify under this key ({key.id}): its ledger "
                    "row may have been changed. Nothing was sealed; if you checked its commit, diff and entry "
                    "point and trust them, pass --replace"
                )
        run.code_seal = seal(identity, key)
        outcomes.append((run.id, outcome))
    return outcomes
