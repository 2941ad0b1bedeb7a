"""Resolving references: ``dataset@version``, ``model@version`` and run ids (or unique prefixes)."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from provenflow.errors import RefError, did_you_mean
from provenflow.ledger import models as m

_REF = re.compile(r"^(?P<name>[^@\s]+)@(?P<version>[^@\s]+)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_name(name: str, what: str) -> str:
    """Dataset and model names must be usable in refs, file names and Prefect artifact keys."""
    if not _NAME.match(name):
        raise RefError(
            f"{what} name {name!r} is not allowed: use up to 128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def safe_name(text: str) -> str:
    """A valid name made from free text (e.g. a target column with spaces)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")[:128] or "model"


def split_ref(ref: str, what: str) -> tuple[str, str]:
    match = _REF.match(ref.strip())
    if not match:
        raise RefError(f"{ref!r} is not a {what} reference; expected NAME@VERSION or NAME@latest")
    return match["name"], match["version"]


def resolve_dataset(session: Session, ref: str) -> m.DatasetVersion:
    name, version = split_ref(ref, "dataset")
    query = select(m.DatasetVersion).where(m.DatasetVersion.name == name)
    if version == "latest":
        # The version the newest completed run wrote: re-running older content makes it latest again.
        row = session.scalars(
            select(m.DatasetVersion)
            .join(m.RunIO, m.RunIO.dataset_version_id == m.DatasetVersion.id)
            .join(m.Run, m.Run.id == m.RunIO.run_id)
            .where(m.DatasetVersion.name == name, m.RunIO.direction == "output", m.Run.state == "completed")
            .order_by(m.Run.ended_at.desc(), m.RunIO.id.desc())
            .limit(1)
        ).first()
    else:
        if not re.fullmatch(r"[0-9a-f]{4,64}", version):
            raise RefError(f"dataset version {version!r} in {ref!r} is not a hex hash prefix or 'latest'")
        rows = session.scalars(query.where(m.DatasetVersion.hash.startswith(version, autoescape=True))).all()
        if len(rows) > 1:
            raise RefError(f"{ref!r} is ambiguous: {', '.join(r.ref for r in rows)}; give more hex digits")
        row = rows[0] if rows else None
    if row is None:
        raise RefError(_unknown(session, m.DatasetVersion, name, ref, "dataset"))
    return row


def resolve_model(session: Session, ref: str) -> m.ModelVersion:
    name, version = split_ref(ref, "model")
    query = select(m.ModelVersion).where(m.ModelVersion.name == name)
    if version == "latest":
        row = session.scalars(query.order_by(m.ModelVersion.version.desc())).first()
    elif version.isdigit():
        row = session.scalars(query.where(m.ModelVersion.version == int(version))).first()
    else:
        alias = session.scalars(
            select(m.ModelAlias).where(m.ModelAlias.name == name, m.ModelAlias.alias == version)
        ).first()
        if alias is None:
            if session.scalar(query.limit(1)) is None:  # no such model at all: not a missing alias
                raise RefError(_unknown(session, m.ModelVersion, name, ref, "model"))
            known = session.scalars(select(m.ModelAlias.alias).where(m.ModelAlias.name == name)).all()
            hint = f" Its aliases: {', '.join(sorted(known))}." if known else f" {name!r} has no aliases yet."
            raise RefError(
                f"{ref!r}: {version!r} is not a version number, 'latest' or an alias of {name!r}.{hint}"
            )
        row = alias.model_version
    if row is None:
        raise RefError(_unknown(session, m.ModelVersion, name, ref, "model"))
    return row


def resolve_run(session: Session, run_id: str) -> m.Run:
    """A run by id or unique id prefix, or the run that produced ``dataset@version`` / ``model@version``."""
    run_id = run_id.strip()
    if "@" in run_id:
        version = resolve_any(session, run_id)
        if version.run_id is None:
            raise RefError(f"{run_id!r} has no recorded run (it was deleted)")
        return session.get(m.Run, version.run_id)
    row = session.get(m.Run, run_id)
    if row is not None:
        return row
    if len(run_id) >= 6:
        rows = session.scalars(
            select(m.Run).where(m.Run.id.startswith(run_id, autoescape=True)).limit(3)
        ).all()
        if len(rows) == 1:
            return rows[0]
        if len(rows) > 1:
            raise RefError(f"run id prefix {run_id!r} is ambiguous; give more characters")
    raise RefError(f"no run with id {run_id!r}; `provenflow runs list` shows the recorded runs")


def resolve_any(session: Session, ref: str) -> m.Run | m.DatasetVersion | m.ModelVersion:
    """A run id, ``dataset@version`` or ``model@version``; when a name is both (a team's model named
    after its data), the dataset's when the version is one of its, else the model's."""
    if "@" not in ref:
        return resolve_run(session, ref)
    name, _ = split_ref(ref, "dataset or model")
    is_model = session.scalar(select(m.ModelVersion.id).where(m.ModelVersion.name == name).limit(1)) is not None
    if session.scalar(select(m.DatasetVersion.id).where(m.DatasetVersion.name == name).limit(1)) is not None:
        try:
            return resolve_dataset(session, ref)
        except RefError:
            if not is_model:
                raise
    if is_model:
        return resolve_model(session, ref)
    names = set(session.scalars(select(m.DatasetVersion.name).distinct())) | set(
        session.scalars(select(m.ModelVersion.name).distinct())
    )
    raise RefError(f"no dataset or model named {name!r}.{did_you_mean(name, names)}")


def _unknown(session: Session, table, name: str, ref: str, what: str) -> str:
    versions = session.scalars(
        select(table).where(table.name == name).order_by(table.id.desc()).limit(5)
    ).all()
    if versions:
        listed = ", ".join(v.ref for v in versions)
        return f"no {what} version {ref!r}; recent versions of {name!r}: {listed}"
    names = set(session.scalars(select(table.name).distinct()))
    hint = did_you_mean(name, names) or (f" Known {what}s: {', '.join(sorted(names))}." if names else "")
    if not names:  # most likely the wrong project: say which ledger was asked
        hint += (
            f" The ledger at {_where(session)} has no {what}s yet: run from the project's folder (its git "
            "root), or set PROVENFLOW_HOME to the project's .provenflow."
        )
    return f"no {what} named {name!r}.{hint}"


def _where(session: Session) -> str:
    url = session.get_bind().url
    return url.database if url.get_backend_name() == "sqlite" else url.render_as_string(hide_password=True)
