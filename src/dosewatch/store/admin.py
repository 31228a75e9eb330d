"""Sites, users and trials: what ``dosewatch sites add / users add / trials add`` and the demo do."""
from __future__ import annotations

from functools import cache

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..protocols import load_protocol
from .audit import Change, append, now
from .models import ROLES, ProtocolVersion, Site, Trial, User, UserSite
from .scope import ALL_SITES_ROLES, NotFound, Refused, Viewer

MIN_PASSWORD = 8


@cache
def _hasher():
    from pwdlib import PasswordHash

    return PasswordHash.recommended()  # Argon2id


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password: str, hashed: str) -> bool:
    return _hasher().verify(password, hashed)


# A hash to check against when the user does not exist, so both cases take the same time.
_DUMMY: list[str] = []


def authenticate(session: Session, name: str, password: str) -> User | None:
    user = session.scalar(select(User).where(User.name == name))
    if user is None or not user.active:
        if not _DUMMY:
            _DUMMY.append(hash_password("not a password"))
        verify_password(password, _DUMMY[0])
        return None
    return user if verify_password(password, user.password_hash) else None


def viewer_of(session: Session, user: User) -> Viewer:
    sites = None
    if user.role not in ALL_SITES_ROLES:
        sites = frozenset(session.scalars(select(UserSite.site_id).where(UserSite.user_id == user.id)))
    return Viewer(user.name, user.role, sites)


def add_site(session: Session, actor: str, code: str, name: str | None = None) -> Site:
    if session.scalar(select(Site).where(Site.code == code)):
        raise Refused(f"site {code!r} exists already")
    site = Site(code=code, name=name or code)
    session.add(site)
    session.flush()
    append(session, [Change(actor, "create", "site", code, after={"code": code, "name": site.name})])
    return site


def site_by_code(session: Session, code: str) -> Site:
    site = session.scalar(select(Site).where(Site.code == code))
    if site is None:
        raise NotFound(f"no site {code!r}")
    return site


def add_user(session: Session, actor: str, name: str, role: str, password: str, sites: list[str] = ()) -> User:
    """A user with an Argon2 hash of ``password``. Investigators and nurses need their sites."""
    if role not in ROLES:
        raise Refused(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise Refused(f"the password needs at least {MIN_PASSWORD} characters")
    if role in ("investigator", "nurse") and not sites:
        raise Refused(f"a {role} works at one or more sites: give --site")
    if session.scalar(select(User).where(User.name == name)):
        raise Refused(f"user {name!r} exists already")
    found = [site_by_code(session, code) for code in sites]
    user = User(name=name, role=role, password_hash=hash_password(password), active=True)
    session.add(user)
    session.flush()
    session.add_all(UserSite(user_id=user.id, site_id=s.id) for s in found)
    append(session, [Change(actor, "create", "user", name, after={"role": role, "sites": list(sites)})])
    return user


def add_trial(session: Session, actor: str, code: str, protocol: str) -> Trial:
    """A trial on a protocol (built-in id or file); its first protocol version is stored."""
    if session.scalar(select(Trial).where(Trial.code == code)):
        raise Refused(f"trial {code!r} exists already")
    proto = load_protocol(protocol)
    trial = Trial(code=code, protocol_id=proto.id, protocol_version=proto.version)
    session.add(trial)
    session.flush()
    session.add(ProtocolVersion(trial_id=trial.id, version=proto.version, protocol_id=proto.id,
                                definition=proto.model_dump(mode="json"), created_at=now()))
    append(session, [Change(actor, "create", "trial", code, after={"protocol": proto.id, "version": proto.version},
                            trial_id=trial.id)])
    return trial


def require_signatures(session: Session, actor: str, trial: Trial, required: bool, reason: str) -> Trial:
    """Make electronic signatures required (or optional) on the trial's decisions; audited."""
    if not (reason and reason.strip()):
        raise Refused("give the reason for the change")
    before = bool(trial.signatures_required)
    trial.signatures_required = required
    append(session, [Change(actor, "update", "trial", trial.code, {"signatures_required": before},
                            {"signatures_required": required}, reason, trial_id=trial.id)])
    return trial


def trial_by_code(session: Session, code: str) -> Trial:
    trial = session.scalar(select(Trial).where(Trial.code == code))
    if trial is None:
        raise NotFound(f"no trial {code!r}")
    return trial


def new_protocol_version(session: Session, actor: str, trial: Trial, protocol: str, reason: str) -> Trial:
    """Put a new version of the trial's protocol in force (the old versions stay stored)."""
    proto = load_protocol(protocol)
    if proto.id != trial.protocol_id:
        raise Refused(f"trial {trial.code} runs protocol {trial.protocol_id}, not {proto.id}")
    if proto.version <= trial.protocol_version:
        raise Refused(f"a change is a new version: {proto.version} is not above {trial.protocol_version}")
    if not reason.strip():
        raise Refused("give the reason for the protocol change")
    session.add(ProtocolVersion(trial_id=trial.id, version=proto.version, protocol_id=proto.id,
                                definition=proto.model_dump(mode="json"), created_at=now()))
    before = trial.protocol_version
    trial.protocol_version = proto.version
    append(session, [Change(actor, "update", "trial", trial.code, {"version": before}, {"version": proto.version},
                            reason, trial_id=trial.id)])
    return trial
