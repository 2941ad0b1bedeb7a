"""The model registry: aliases (``staging``, ``production``, any name), their history, the
metric gate a candidate passes before it may take an alias from the current holder, and the
deliberate sealing of model versions an admin has checked (``provenflow models sign``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from provenflow.errors import ProvenflowError, SignatureError
from provenflow.ledger import models as m
from provenflow.ledger.refs import check_name
from provenflow.modeling import signing
from provenflow.modeling.signing import Key

if TYPE_CHECKING:
    from provenflow.workspace import Workspace

# Metrics where lower is better; every other metric counts as higher-is-better.
LOWER_IS_BETTER = frozenset({"rmse", "mae", "mse", "log_loss"})
# The default gate: the candidate may be at most this much worse than the holder, per metric.
DEFAULT_TOLERANCE = 0.01


class PromotionError(ProvenflowError):
    pass


@dataclass
class GateResult:
    passed: bool
    holder: str | None
    dataset: str | None
    rows: list[dict] = field(default_factory=list)
    scored_rows: int | None = None  # how many held-out rows both were scored on
    left_out: int = 0  # held-out rows the holder had trained on: not scored

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def markdown(self) -> str:
        if self.holder is None:
            return "No model holds this alias yet: nothing to compare with.\n"
        lines = [
            f"Held-out rows of `{self.dataset}`{rows_scored(self.scored_rows, self.left_out)}; holder `{self.holder}`. *Tolerance*: how "
            "much worse the candidate may be.",
            "",
            "| metric | candidate | holder | change | tolerance | ok |",
            "|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            lines.append(
                f"| {r['metric']} | {r['candidate']:.4f} | {r['holder']:.4f} | {r['change']:+.4f} "
                f"| {r['tolerance']} | {'yes' if r['ok'] else '**no**'} |"
            )
        return "\n".join(lines) + "\n"


def rows_scored(scored_rows: int | None, left_out: int) -> str:
    """' (N rows; M the holder trained on left out)', or '' for a gate recorded before counts."""
    if scored_rows is None:
        return ""
    return f" ({scored_rows} rows" + (f"; {left_out} the holder trained on left out)" if left_out else ")")


def metric_gate(
    candidate: dict[str, float],
    holder: dict[str, float] | None,
    tolerances: dict[str, float] | None = None,
    holder_ref: str | None = None,
    dataset: str | None = None,
) -> GateResult:
    """Pass when no metric is worse than the holder's by more than its tolerance.

    ``tolerances`` maps metric → how much worse it may be (absolute); metrics not named use
    DEFAULT_TOLERANCE. With no holder the gate passes.
    """
    tolerances = tolerances or {}
    unknown = set(tolerances) - set(candidate)
    if unknown:
        raise PromotionError(
            f"no metric {', '.join(sorted(unknown))} to gate on; the model has {', '.join(sorted(candidate))}"
        )
    if holder is None:
        return GateResult(True, None, dataset)
    rows = []
    for metric in sorted(set(candidate) & set(holder)):
        change = candidate[metric] - holder[metric]
        worse_by = change if metric in LOWER_IS_BETTER else -change
        tolerance = tolerances.get(metric, DEFAULT_TOLERANCE)
        rows.append(
            {"metric": metric, "candidate": candidate[metric], "holder": holder[metric], "change": change,
             "tolerance": tolerance, "ok": worse_by <= tolerance}
        )  # fmt: skip
    return GateResult(all(r["ok"] for r in rows), holder_ref, dataset, rows)


def agreement_gate(gate: GateResult, report: dict, minimum: float) -> GateResult:
    """Add the shadow gate to ``gate``: the candidate, deployed as the holder's shadow challenger
    (``provenflow deploy CANDIDATE --shadow-of HOLDER``), agreed with the holder's predictions on at
    least ``minimum`` of the rows both answered (``shadow.shadow_agreement``'s ``report``). It shows
    as one more row of the gate's table, so the approval form shows it too."""
    if not 0.0 < minimum <= 1.0:
        raise PromotionError(f"the required agreement {minimum} is not a fraction in (0, 1]; e.g. 0.9")
    if gate.holder is None:
        raise PromotionError("no model holds this alias yet: there is no production to agree with")
    if not report.get("matched"):
        raise PromotionError(
            f"no rows answered by both {report.get('production')} and its shadow {report.get('challenger')}; "
            f"deploy the candidate with --shadow-of {gate.holder} and send traffic first"
        )
    agreement = report["agreement"]
    row = {"metric": "shadow_agreement", "candidate": agreement, "holder": 1.0, "change": agreement - 1.0,
           "tolerance": round(1.0 - minimum, 6), "ok": agreement >= minimum, "rows": report["matched"]}  # fmt: skip
    return GateResult(gate.passed and row["ok"], gate.holder, gate.dataset, [*gate.rows, row])


def check_alias(alias: str) -> str:
    check_name(alias, "alias")
    if alias == "latest" or alias.isdigit():
        raise PromotionError(f"{alias!r} cannot be an alias: it reads as a version")
    return alias


def registered_by_flow_run(session: Session, flow_run_id: str, name: str) -> m.ModelVersion:
    """The version of model NAME that the runs of Prefect flow run FLOW_RUN_ID registered (the
    newest, if several): what a team's own training deployment produced for the retrain flow."""
    return _newest_registered(
        session, m.Run.prefect_flow_run_id == str(flow_run_id), name, f"flow run {flow_run_id} registered no version of model {name!r}; its flow must call"
    )


def registered_by_runs(session: Session, run_ids: list[str], name: str) -> m.ModelVersion:
    """The version of model NAME that runs RUN_IDS registered (the newest, if several): what a team's
    notebook or script, run again by the retrain flow, produced."""
    return _newest_registered(
        session, m.Run.id.in_(run_ids), name,
        f"the code that trained {name!r}, run again, registered no version of it ({len(run_ids)} runs started); it must call",
    )  # fmt: skip


def _newest_registered(session: Session, runs: object, name: str, missing: str) -> m.ModelVersion:
    """The newest version of model NAME that a completed run matching RUNS registered; PromotionError
    (MISSING, then how to register one) when none did."""
    edges = session.scalars(
        select(m.RunIO)
        .join(m.Run)
        .where(runs, m.Run.state == "completed", m.RunIO.direction == "output",
               m.RunIO.kind == "model", m.RunIO.model_version_id.is_not(None))
        .order_by(m.RunIO.id.desc())
    )  # fmt: skip
    found = [e.model_version for e in edges if e.model_version.name == name]
    if not found:
        raise PromotionError(f"{missing} provenflow.log_model(model, name={name!r}, ...) inside provenflow.start(...)")
    return found[0]


def training_reference(session: Session, version: m.ModelVersion) -> m.DatasetVersion:
    """The dataset version whose profile is VERSION's drift reference: the one ``log_model`` was
    given as ``reference=``, else the training run's (first) input dataset."""
    from provenflow.ledger.refs import resolve_dataset

    named = (version.signature or {}).get("reference")
    if named:
        return resolve_dataset(session, named)
    run = session.get(m.Run, version.run_id) if version.run_id else None
    found = next(
        (
            io.dataset_version
            for io in (run.io if run else [])
            if io.direction == "input" and io.kind == "dataset"
        ),
        None,
    )
    if found is None:
        raise ProvenflowError(
            f"{version.ref} records no training dataset to compare production data with; read the training "
            "data with provenflow.dataset(...) in the run that logs it, or pass log_model(..., reference=frame)"
        )
    return found


def holder_of(session: Session, name: str, alias: str) -> m.ModelVersion | None:
    row = session.scalars(
        select(m.ModelAlias).where(m.ModelAlias.name == name, m.ModelAlias.alias == alias)
    ).first()
    return row.model_version if row else None


def assign_alias(
    session: Session,
    version: m.ModelVersion,
    alias: str,
    actor: str | None,
    comment: str | None = None,
    gate: dict | None = None,
    run_id: str | None = None,
) -> m.AliasEvent:
    """Point NAME@ALIAS at this version, and record the move."""
    check_alias(alias)
    now = datetime.now(UTC)
    row = session.scalars(
        select(m.ModelAlias).where(m.ModelAlias.name == version.name, m.ModelAlias.alias == alias)
    ).first()
    previous = row.model_version.version if row else None
    if row is None:
        session.add(m.ModelAlias(name=version.name, alias=alias, model_version_id=version.id, updated_at=now))
    else:
        row.model_version_id, row.updated_at = version.id, now
    event = m.AliasEvent(
        name=version.name, alias=alias, action="assigned", from_version=previous, to_version=version.version,
        actor=actor, comment=comment, gate=gate, run_id=run_id, created_at=now,
    )  # fmt: skip
    session.add(event)
    return event


def record_rejection(
    session: Session,
    version: m.ModelVersion,
    alias: str,
    actor: str | None,
    comment: str | None,
    gate: dict | None = None,
    run_id: str | None = None,
) -> m.AliasEvent:
    holder = holder_of(session, version.name, alias)
    event = m.AliasEvent(
        name=version.name, alias=alias, action="rejected", from_version=holder.version if holder else None,
        to_version=version.version, actor=actor, comment=comment, gate=gate, run_id=run_id,
        created_at=datetime.now(UTC),
    )  # fmt: skip
    session.add(event)
    return event


def aliases(session: Session, name: str) -> dict[str, int]:
    rows = session.scalars(select(m.ModelAlias).where(m.ModelAlias.name == name).order_by(m.ModelAlias.alias))
    return {r.alias: r.model_version.version for r in rows}


def alias_history(session: Session, name: str) -> list[dict]:
    rows = session.scalars(select(m.AliasEvent).where(m.AliasEvent.name == name).order_by(m.AliasEvent.id))
    return [
        {"alias": e.alias, "action": e.action, "from_version": e.from_version, "to_version": e.to_version,
         "actor": e.actor, "comment": e.comment, "run_id": e.run_id, "at": e.created_at.isoformat(),
         "gate_passed": (e.gate or {}).get("passed")}
        for e in rows
    ]  # fmt: skip


# -- seals (provenflow.modeling.signing) ---------------------------------------------------------


@dataclass(frozen=True)
class SealOutcome:
    ref: str
    hash: str
    outcome: str  # "sealed" | "already sealed" | "re-sealed" (rotation) | "replaced" (--replace)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def seal_versions(
    workspace: Workspace,
    refs: list[str],
    key: Key,
    previous: Key | None = None,
    replace: bool = False,
) -> list[SealOutcome]:
    """Seal model versions an admin has decided to trust, after checking their stored bytes still
    hash to the recorded value. A version whose seal is valid under ``previous`` is re-sealed with
    ``key`` (rotation); one whose seal is broken, or made with a key not given, is refused unless
    ``replace``: a broken seal means the ledger row was changed, and re-sealing it blesses that.
    All or nothing: one transaction, nothing sealed if any version is refused."""
    from provenflow.digest import Digest
    from provenflow.ledger.refs import resolve_model

    outcomes = []
    with workspace.ledger.transaction() as session:
        versions = (
            list(
                session.scalars(select(m.ModelVersion).order_by(m.ModelVersion.name, m.ModelVersion.version))
            )
            if not refs
            else [resolve_model(session, ref) for ref in refs]
        )
        for version in versions:
            workspace.store.check(Digest(version.hash))  # missing or corrupt bytes: never sealed
            model = signing.ModelIdentity.of(version)
            outcome = "sealed"
            if version.seal is not None:
                if _verifies(model, version.seal, key) and version.seal.split(":")[1] == key.id:
                    outcomes.append(SealOutcome(version.ref, version.hash, "already sealed"))
                    continue
                # Sealed by a verify-only key (PROVENFLOW_VERIFY_KEYS, e.g. the old HMAC secret) or
                # the previous key file: a rotation, sealed again under this key.
                if _verifies(model, version.seal, key) or (
                    previous is not None and _verifies(model, version.seal, previous)
                ):
                    outcome = "re-sealed"
                elif replace:
                    outcome = "replaced"
                else:
                    raise SignatureError(
                        f"model version {version.ref} has a seal that does not verify under this key "
                        f"({key.id}){' or the previous one' if previous else ''}: its ledger row may have "
                        "been changed. Nothing was sealed. If it was a key rotation, pass "
                        "--previous-key-file; if you checked the model and trust it, pass --replace"
                    )
            version.seal = signing.seal(model, key)
            outcomes.append(SealOutcome(version.ref, version.hash, outcome))
    return outcomes


def _verifies(model: signing.ModelIdentity, recorded: str, key: Key) -> bool:
    try:
        signing.verify(model, recorded, key)
    except SignatureError:
        return False
    return True
