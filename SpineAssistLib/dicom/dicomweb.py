"""Studies on a DICOMweb server (a PACS, Orthanc, dcm4chee): find them (QIDO-RS), fetch them into a
folder the assessment reads (WADO-RS), and store the assessment's SEG and SR back (STOW-RS).

Usage::

    from pathlib import Path
    from SpineAssistLib.dicom.dicomweb import connect, lumbar_mr_filters
    pacs = connect("https://pacs.example.org/dicom-web")      # credentials: see below
    for study in pacs.find_studies(lumbar_mr_filters("20240101", "20241231")):
        folder = pacs.fetch_study(study.study_uid, Path("fetched") / study.study_uid)
        ...                                                    # run_assessment(folder, out)
    pacs.store([Path("out/seg.dcm"), Path("out/sr.dcm")])      # what the server holds already is not sent

Credentials never go in the URL (it ends up in shell history, process lists and logs). They come
from ``SPINEASSIST_DICOMWEB_TOKEN`` (sent as a Bearer token), or ``SPINEASSIST_DICOMWEB_USER`` and
``SPINEASSIST_DICOMWEB_PASSWORD`` (HTTP Basic), or else the netrc file (``NETRC``, default
``~/.netrc``) entry for the URL's host; without any of them requests go unauthenticated. Messages
name where credentials came from, never their value.

Patient names and IDs, which servers send with every QIDO-RS answer, are dropped as the answer is
read: ``StudyRef`` has no field for them. No query here filters on a patient attribute, so the
request URLs that dicomweb-client and urllib3 log at DEBUG level hold UIDs, dates and codes only.

Everything the server is asked goes through ``dicomweb_client.api.DICOMwebClient`` (imported when a
server is connected, so this module loads without it).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence
from urllib.parse import urlsplit, urlunsplit

from SpineAssistLib.errors import SpineAssistError, StudyError

log = logging.getLogger(__name__)

TOKEN_ENV = "SPINEASSIST_DICOMWEB_TOKEN"
USER_ENV = "SPINEASSIST_DICOMWEB_USER"
PASSWORD_ENV = "SPINEASSIST_DICOMWEB_PASSWORD"

# QIDO-RS answers are read in pages: servers cap an answer (often at 100-1000 matches) and an
# archive query may match tens of thousands of studies.
QIDO_PAGE = 200
MAX_PAGES = 10_000
# Attributes of a series rather than of a study: a filter on one of them needs a series-level query.
SERIES_KEYS = frozenset({"Modality", "BodyPartExamined", "SeriesDescription", "SeriesNumber", "SeriesInstanceUID",
                         "ProtocolName", "SeriesDate", "SeriesTime", "PerformedProcedureStepStartDate"})
# Study attributes a series-level query cannot filter on (Orthanc answers nothing when asked).
STUDY_ONLY_KEYS = frozenset({"ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"})
# Transfer syntax for WADO-RS: the instances as the server stores them ("*"): no server-side
# transcoding, nothing lost; pydicom's pylibjpeg plugins read the compressed ones.
AS_STORED = (("application/dicom", "*"),)
# dicomweb-client tries a request again when it cannot connect, times out or is answered 429/503:
# three tries, 0.5 s and 1 s apart, ride out a server restarting without keeping a user waiting long.
HTTP_TRIES = 3
RETRY_WAIT_MS = 250
PARTIAL_SUFFIX = ".partial"

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")

# DICOM JSON tags of the attributes read from QIDO-RS answers
_STUDY_UID, _SERIES_UID, _SOP_UID = "0020000D", "0020000E", "00080018"
_STUDY_DATE, _STUDY_DESCRIPTION, _MODALITIES = "00080020", "00081030", "00080061"
_N_SERIES, _N_INSTANCES = "00201206", "00201209"
_MODALITY, _SERIES_DESCRIPTION, _SERIES_NUMBER, _BODY_PART = "00080060", "0008103E", "00200011", "00180015"


class DicomwebError(SpineAssistError):
    """The DICOMweb server cannot be reached, refuses the request, or does not answer as DICOMweb."""


@dataclass(frozen=True)
class StudyRef:
    """One study found on the server, without any patient attribute (names and IDs never reach logs).

    ``study_date``: ``YYYYMMDD`` as the server has it ("" when it has none); ``modalities``: its
    ModalitiesInStudy; ``number_of_series``: None when the server does not say.
    """

    study_uid: str
    study_date: str = ""
    modalities: tuple[str, ...] = ()
    description: str = ""
    number_of_series: int | None = None


@dataclass(frozen=True)
class StoreResult:
    """What ``DicomwebServer.store`` did, by SOP Instance UID: sent now, or found on the server already."""

    stored: tuple[str, ...] = ()
    already_there: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Credentials:
    source: str                             # where they came from, for messages; never the secret
    auth: Any = field(default=None, repr=False)


def check_uid(uid: str, what: str = "Study Instance UID") -> str:
    """Return ``uid`` if it is a DICOM UID (digits and dots, at most 64 characters); else raise ``DicomwebError``."""
    if not isinstance(uid, str) or len(uid) > 64 or not _UID.match(uid):
        raise DicomwebError(f"{uid!r} is not a {what} (digits separated by dots, at most 64 characters, "
                            f"e.g. 1.2.840.113619.2.55.3.1234): check the value you gave")
    return uid


def _date(value: str | datetime.date | None, name: str) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, datetime.date):
        return value.strftime("%Y%m%d")
    text = str(value).strip().replace("-", "")
    try:
        datetime.datetime.strptime(text, "%Y%m%d")
    except ValueError:
        raise DicomwebError(f"{name} {value!r} is not a date: give it as YYYYMMDD or YYYY-MM-DD, "
                            f"e.g. 20240131") from None
    return text


def lumbar_mr_filters(date_from: str | datetime.date | None = None, date_to: str | datetime.date | None = None,
                      body_part: str | None = "LSPINE") -> dict[str, str]:
    """Return the QIDO-RS filters for "MR studies of the lumbar spine from ``date_from`` to ``date_to``" (inclusive).

    Dates: ``YYYYMMDD`` or ``YYYY-MM-DD``; either may be None (open range). ``body_part``: the
    series' BodyPartExamined (``LSPINE`` is DICOM's defined term; sites also use ``SPINE`` or
    ``L-SPINE``, and the wildcard ``*SPINE*`` matches them all); None: any body part.
    ``find_studies`` turns BodyPartExamined, a series attribute, into a series-level query.
    """
    start, end = _date(date_from, "the start date"), _date(date_to, "the end date")
    if start and end and start > end:
        raise DicomwebError(f"the date range {start}-{end} ends before it starts: give the earlier date first")
    filters = {"ModalitiesInStudy": "MR"}
    if start or end:
        filters["StudyDate"] = f"{start}-{end}"
    if body_part:
        filters["BodyPartExamined"] = body_part
    return filters


# ---- connecting ----------------------------------------------------------------------------------

def _netrc_path() -> Path:
    return Path(os.environ["NETRC"]).expanduser() if os.environ.get("NETRC") else Path.home() / ".netrc"


def _credentials(host: str) -> _Credentials:
    import requests

    token = os.environ.get(TOKEN_ENV, "")
    user, password = os.environ.get(USER_ENV, ""), os.environ.get(PASSWORD_ENV, "")
    if token:
        return _Credentials(TOKEN_ENV, _BearerAuth(token))
    if user or password:
        if not (user and password):
            missing = PASSWORD_ENV if user else USER_ENV
            raise DicomwebError(f"{USER_ENV} and {PASSWORD_ENV} go together: {missing} is not set; "
                                f"set both, or neither (then {TOKEN_ENV} or the netrc file is used)")
        return _Credentials(f"{USER_ENV} and {PASSWORD_ENV}", requests.auth.HTTPBasicAuth(user, password))
    path = _netrc_path()
    if not path.is_file():
        return _Credentials("")
    import netrc

    try:
        entry = netrc.netrc(str(path)).authenticators(host)
    except netrc.NetrcParseError as e:
        # the parser's message may quote the token it choked on, a password perhaps: only the line is shown
        raise DicomwebError(f"the netrc file {path} cannot be read (line {e.lineno}): correct it, or set "
                            f"{TOKEN_ENV}, or {USER_ENV} and {PASSWORD_ENV}") from None
    except OSError as e:
        raise DicomwebError(f"the netrc file {path} cannot be read ({e.strerror or type(e).__name__}): "
                            f"make it readable, or set {USER_ENV} and {PASSWORD_ENV}") from None
    if entry is None or not entry[0] or not entry[2]:
        return _Credentials("")
    return _Credentials(f"the netrc file {path} (machine {host})", requests.auth.HTTPBasicAuth(entry[0], entry[2]))


class _BearerAuth:
    """``Authorization: Bearer <token>`` on each request (requests drops it on a redirect to another host)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: Any) -> Any:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(<hidden>)"


def _check_url(url: str) -> str:
    """Return the DICOMweb root ``url`` without a trailing slash, or raise ``DicomwebError`` saying what is wrong."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except (ValueError, AttributeError):
        raise DicomwebError("the DICOMweb URL cannot be read: give it as http(s)://host[:port]/path, "
                            "e.g. http://127.0.0.1:8042/dicom-web") from None
    if "@" in parts.netloc:
        # the URL is not echoed: it holds the secret
        host = parts.netloc.rsplit("@", 1)[1]
        raise DicomwebError(f"the DICOMweb URL holds a user name or password (before '@'); SpineAssist takes no "
                            f"credentials in URLs, where shell history, process lists and logs keep them: give "
                            f"{parts.scheme}://{host}{parts.path} and set {USER_ENV} and {PASSWORD_ENV} (or "
                            f"{TOKEN_ENV}) in the environment, or add host {parts.hostname} to your netrc file")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DicomwebError(f"the DICOMweb URL {url!r} is not an http:// or https:// address with a host: give "
                            f"the server's DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web")
    if parts.query or parts.fragment:
        raise DicomwebError(f"the DICOMweb URL {url!r} has a query or fragment ('?' or '#'): give the server's "
                            f"DICOMweb root only, e.g. http://127.0.0.1:8042/dicom-web")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def connect(url: str, *, timeout_s: float = 60) -> "DicomwebServer":
    """Return a ``DicomwebServer`` for the DICOMweb root ``url`` (e.g. ``http://pacs:8042/dicom-web``).

    Nothing is sent yet: the first query says whether the server answers. ``timeout_s``: how long
    to wait for the connection and for each part of an answer. Raises ``DicomwebError`` for a URL
    with credentials in it, a malformed URL, or credentials set half-way (see the module's docstring).
    """
    root = _check_url(url)
    if not timeout_s > 0:
        raise DicomwebError(f"timeout_s must be more than 0 seconds; got {timeout_s}")
    credentials = _credentials(urlsplit(root).hostname or "")
    return DicomwebServer(root, credentials, timeout_s)


# ---- the server ----------------------------------------------------------------------------------

def _first(item: dict, tag: str, default: Any = None) -> Any:
    values = (item.get(tag) or {}).get("Value") or []
    return values[0] if values else default


def _int(item: dict, tag: str) -> int | None:
    value = _first(item, tag)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _study_ref(item: dict) -> StudyRef:
    return StudyRef(study_uid=str(_first(item, _STUDY_UID, "")), study_date=str(_first(item, _STUDY_DATE, "")),
                    modalities=tuple(str(m) for m in (item.get(_MODALITIES) or {}).get("Value") or ()),
                    description=str(_first(item, _STUDY_DESCRIPTION, "")), number_of_series=_int(item, _N_SERIES))


def _series_info(item: dict) -> dict[str, Any]:
    return {"series_uid": str(_first(item, _SERIES_UID, "")), "modality": str(_first(item, _MODALITY, "")),
            "description": str(_first(item, _SERIES_DESCRIPTION, "")), "number_of_instances": _int(item, _N_INSTANCES),
            "series_number": _int(item, _SERIES_NUMBER), "body_part": str(_first(item, _BODY_PART, ""))}


def _keyword(key: str) -> str:
    if _TAG.match(key):
        from pydicom.datadict import keyword_for_tag

        return keyword_for_tag(int(key, 16)) or key
    return key


class DicomwebServer:
    """A DICOMweb server: ``find_studies``, ``find_series``, ``fetch_study``, ``store``. Made by ``connect``."""

    def __init__(self, url: str, credentials: _Credentials, timeout_s: float) -> None:
        from dicomweb_client.api import DICOMwebClient

        self.url = url
        self.timeout_s = timeout_s
        self._credentials = credentials
        session = _session()
        session.auth = credentials.auth
        self._client = DICOMwebClient(url, session=session, timeout=timeout_s, permissive_uid=True)
        self._client.set_http_retry_params(retry=True, max_attempts=HTTP_TRIES,
                                           wait_exponential_multiplier=RETRY_WAIT_MS)

    def __repr__(self) -> str:
        return f"DicomwebServer({self.url!r})"

    # -- errors: one line that says what to do, never a secret ----------------------------------------

    @contextlib.contextmanager
    def _asking(self, action: str) -> Iterator[None]:
        """Turn what the HTTP layer raises while ``action`` into one ``DicomwebError`` line."""
        import requests
        import retrying

        try:
            yield
        except requests.exceptions.Timeout:
            raise DicomwebError(f"{action}: the DICOMweb server at {self.url} did not answer within "
                                f"{self.timeout_s:g} s ({HTTP_TRIES} tries): check that it runs and is not "
                                f"overloaded, then try again") from None
        except requests.exceptions.SSLError:
            raise DicomwebError(f"{action}: the TLS certificate of {self.url} is not trusted: if your site uses its "
                                f"own certificate authority, set REQUESTS_CA_BUNDLE to its certificate file") from None
        except requests.exceptions.ConnectionError as e:
            text = str(e).lower()
            why = ("connection refused" if "refused" in text else "host name not found"
                   if "resolve" in text or "name or service" in text else "no connection")
            raise DicomwebError(f"{action}: cannot connect to the DICOMweb server at {self.url} ({why}, "
                                f"{HTTP_TRIES} tries): check the URL, and that the server runs and is reachable "
                                f"from this computer") from None
        except requests.exceptions.HTTPError as e:
            raise DicomwebError(self._http_message(action, e.response)) from None
        except retrying.RetryError:
            raise DicomwebError(f"{action}: the DICOMweb server at {self.url} stayed busy (HTTP 429/503) over "
                                f"{HTTP_TRIES} tries: try again later") from None
        except (requests.exceptions.JSONDecodeError, _NotDicomweb):
            raise DicomwebError(f"{action}: {self.url} did not answer as a DICOMweb server: check that the URL "
                                f"is its DICOMweb root (for Orthanc http://host:8042/dicom-web, for dcm4chee "
                                f"http://host:8080/dcm4chee-arc/aets/DCM4CHEE/rs)") from None
        except requests.exceptions.RequestException as e:
            raise DicomwebError(f"{action}: the request to {self.url} failed ({type(e).__name__}): check the "
                                f"URL and the network, then try again") from None
        except ValueError as e:
            # dicomweb-client and pydicom raise it for an answer that is not the DICOM asked for; their
            # message may quote the answer, so only its kind is shown
            raise DicomwebError(f"{action}: {self.url} sent an answer that is not DICOMweb's ({type(e).__name__}): "
                                f"check that the URL is the server's DICOMweb root, and the server's log") from None

    def _http_message(self, action: str, response: Any) -> str:
        status = getattr(response, "status_code", 0)
        host = urlsplit(self.url).hostname
        how = (f"set {TOKEN_ENV}, or {USER_ENV} and {PASSWORD_ENV}, or a 'machine {host} login ... password ...' "
               f"line in the netrc file ({_netrc_path()})")
        if status == 401:
            given = (f"refused the credentials from {self._credentials.source}" if self._credentials.source
                     else "none were given")
            return f"{action}: the DICOMweb server at {self.url} asks for credentials (HTTP 401) and {given}: {how}"
        if status == 403:
            who = f"the user of {self._credentials.source}" if self._credentials.source else "unauthenticated users"
            return (f"{action}: the DICOMweb server at {self.url} does not allow this to {who} (HTTP 403): ask its "
                    f"administrator for the right to query, retrieve and store, or {how} for another user")
        if status == 404:
            return (f"{action}: the DICOMweb server at {self.url} answered 404 (not found): check that the URL is its "
                    f"DICOMweb root (for Orthanc http://host:8042/dicom-web)")
        if status == 400:
            # what a server answers a query it does not take, and what a URL of another web API often gets
            return (f"{action}: the DICOMweb server at {self.url} answered HTTP 400 (bad request): check that the URL "
                    f"is its DICOMweb root (for Orthanc http://host:8042/dicom-web) and that the filters are valid")
        reason = getattr(response, "reason", "") or ""
        return (f"{action}: the DICOMweb server at {self.url} answered HTTP {status} {reason}".rstrip() +
                ": check the server's log, or try again later")

    # -- QIDO-RS ---------------------------------------------------------------------------------------

    def _pages(self, search: Callable[..., list], filters: dict[str, str], fields: Sequence[str],
               key: str, **where: str) -> Iterator[dict]:
        """Yield every match of a QIDO-RS query, asked for page by page; ``key`` is the tag that tells matches apart."""
        seen: set[str] = set()
        offset = 0
        for _ in range(MAX_PAGES):
            page = search(**where, search_filters=dict(filters) or None, fields=list(fields) or None,
                          limit=QIDO_PAGE, offset=offset)
            if not isinstance(page, list) or not all(isinstance(m, dict) and all(_TAG.match(k) for k in m)
                                                     for m in page):
                raise _NotDicomweb()
            new = [m for m in page if _first(m, key) not in seen]
            if not new:             # no more matches, or a server that ignores the offset
                return
            for m in new:
                seen.add(_first(m, key))
                yield m
            offset += len(page)
        log.warning("QIDO-RS query stopped after %d pages of %d matches", MAX_PAGES, QIDO_PAGE)

    def find_studies(self, filters: dict[str, str], *, limit: int | None = None) -> list[StudyRef]:
        """Return the studies matching QIDO-RS ``filters`` (attribute keyword or tag -> value), at most ``limit``,
        in the server's order.

        Study attributes filter a study-level query. Filters on series attributes (BodyPartExamined,
        Modality, SeriesDescription, ...) go to a series-level query, with the study filters it can
        take, and a study matches when one of its series does. ModalitiesInStudy (one code, or several
        separated by backslashes) is matched here, on the studies' answers, and one code narrows the
        series query as its Modality: Orthanc 1.10 filtering on it drops every match after the first page.
        """
        if limit is not None and limit < 1:
            raise DicomwebError(f"limit must be 1 or more; got {limit}")
        study_filters: dict[str, str] = {}
        series_filters: dict[str, str] = {}
        modalities: set[str] = set()
        for key, value in filters.items():
            if _keyword(key) == "ModalitiesInStudy":
                modalities = {m.strip().upper() for m in re.split(r"[\\,]", str(value)) if m.strip()}
            else:
                (series_filters if _keyword(key) in SERIES_KEYS else study_filters)[key] = str(value)
        wanted: set[str] | None = None
        with self._asking("searching for studies"):
            if series_filters:
                query = {k: v for k, v in study_filters.items() if _keyword(k) not in STUDY_ONLY_KEYS}
                query.update(series_filters)
                if len(modalities) == 1 and not any(_keyword(k) == "Modality" for k in query):
                    query["Modality"] = next(iter(modalities))
                wanted = {str(_first(m, _STUDY_UID)) for m in self._pages(
                    self._client.search_for_series, query, ("StudyInstanceUID",), _SERIES_UID)}
                if not wanted:
                    return []
            found: list[StudyRef] = []
            fields = ("StudyDate", "StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedSeries")
            for match in self._pages(self._client.search_for_studies, study_filters, fields, _STUDY_UID):
                ref = _study_ref(match)
                if (wanted is None or ref.study_uid in wanted) and \
                        (not modalities or modalities & {m.upper() for m in ref.modalities}):
                    found.append(ref)
                    if limit is not None and len(found) >= limit:
                        break
        return found

    def find_series(self, study_uid: str) -> list[dict[str, Any]]:
        """Return the study's series: dicts with series_uid, modality, description, number_of_instances,
        series_number and body_part ([] when the server has no such study)."""
        check_uid(study_uid)
        fields = ("Modality", "SeriesDescription", "SeriesNumber", "NumberOfSeriesRelatedInstances", "BodyPartExamined")
        with self._asking(f"listing the series of study {study_uid}"):
            return [_series_info(m) for m in self._pages(self._client.search_for_series, {}, fields, _SERIES_UID,
                                                         study_instance_uid=study_uid)]

    def _instance_uids(self, study_uid: str, series_uid: str) -> list[str]:
        with self._asking(f"listing the instances of series {series_uid}"):
            return [str(_first(m, _SOP_UID)) for m in self._pages(
                self._client.search_for_instances, {}, ("SOPInstanceUID",), _SOP_UID,
                study_instance_uid=study_uid, series_instance_uid=series_uid)]

    def _has_study(self, study_uid: str) -> bool:
        with self._asking(f"looking for study {study_uid}"):
            return any(True for _ in self._pages(self._client.search_for_studies, {"StudyInstanceUID": study_uid},
                                                 (), _STUDY_UID))

    def _has_instance(self, study_uid: str, sop_uid: str) -> bool:
        with self._asking(f"looking for instance {sop_uid}"):
            return any(True for _ in self._pages(self._client.search_for_instances, {"SOPInstanceUID": sop_uid},
                                                 (), _SOP_UID, study_instance_uid=study_uid))

    # -- WADO-RS ---------------------------------------------------------------------------------------

    def fetch_study(self, study_uid: str, dest: Path, *, modalities: Iterable[str] | None = ("MR",),
                    cancel: Callable[[], None] | None = None) -> Path:
        """Return ``dest`` holding the study's series of ``modalities`` (None: all) as
        ``dest/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``, each file written whole or not at all.

        Files already in ``dest`` are not fetched again, so a fetch that was stopped resumes.
        ``cancel`` is called between series and between instances; it raises to stop. One fetch
        into one ``dest`` at a time. Raises ``StudyError`` when the server has no such study or no
        series of ``modalities`` in it, ``DicomwebError`` when the server cannot be asked.
        """
        check_uid(study_uid)
        check = cancel or (lambda: None)
        dest = Path(dest)
        series = self.find_series(study_uid)
        if not series:
            if not self._has_study(study_uid):
                raise StudyError(f"the DICOMweb server at {self.url} has no study with StudyInstanceUID {study_uid}: "
                                 f"check the UID (the PACS viewer shows it; or ask {self.url}/studies?"
                                 f"StudyInstanceUID={study_uid})")
        wanted = set(modalities) if modalities is not None else None
        chosen = [s for s in series if wanted is None or s["modality"] in wanted]
        if not chosen:
            held = ", ".join(sorted({s["modality"] or "?" for s in series})) or "none"
            raise StudyError(f"study {study_uid} on {self.url} has no series of modality "
                             f"{', '.join(sorted(wanted or ()))} (its series' modalities: {held}): "
                             f"SpineAssist assesses MR studies; check the UID")
        for s in chosen:
            check()
            try:
                self._fetch_series(study_uid, check_uid(s["series_uid"], "Series Instance UID"), dest, check)
            except OSError as e:
                raise SpineAssistError(f"the study cannot be written into {dest} ({e.strerror or type(e).__name__}): "
                                       f"free some space there, or fetch into another folder") from None
        return dest

    def _fetch_series(self, study_uid: str, series_uid: str, dest: Path, check: Callable[[], None]) -> None:
        folder = dest / series_uid
        folder.mkdir(parents=True, exist_ok=True)
        for partial in folder.glob(f"*{PARTIAL_SUFFIX}"):     # left by a fetch that was killed
            partial.unlink(missing_ok=True)
        expected = self._instance_uids(study_uid, series_uid)
        missing = {uid for uid in expected if not (folder / f"{check_uid(uid, 'SOP Instance UID')}.dcm").exists()}
        if not missing:
            return
        log.info("fetching %d of %d instances of series %s", len(missing), len(expected), series_uid)
        with self._asking(f"fetching series {series_uid} of study {study_uid}"):
            if len(missing) * 2 > len(expected):
                # one streamed request for the series costs the server far less than one per instance
                instances = self._client.iter_series(study_uid, series_uid, media_types=AS_STORED)
                try:
                    for ds in instances:
                        check()
                        uid = str(ds.SOPInstanceUID)
                        if uid in missing or uid not in expected:
                            _write_instance(ds, folder)
                            missing.discard(uid)
                finally:
                    instances.close()
            else:
                for uid in sorted(missing):
                    check()
                    _write_instance(self._client.retrieve_instance(study_uid, series_uid, uid, media_types=AS_STORED),
                                    folder)
                    missing.discard(uid)
        if missing:
            raise DicomwebError(f"fetching series {series_uid} of study {study_uid}: the DICOMweb server at {self.url} "
                                f"listed {len(expected)} instances but sent {len(expected) - len(missing)}: "
                                f"try again (the instances fetched are kept)")

    # -- STOW-RS ---------------------------------------------------------------------------------------

    def store(self, paths: Sequence[Path]) -> StoreResult:
        """Store DICOM files (the assessment's seg.dcm and sr.dcm) with STOW-RS; return what was sent.

        Each instance is first looked for in its study (QIDO-RS, by SOPInstanceUID) and not sent
        when the server holds it already, so storing the same outputs again stores nothing twice.
        """
        import pydicom

        datasets = []
        for path in map(Path, paths):
            try:
                ds = pydicom.dcmread(path)
                study_uid, sop_uid = str(ds.StudyInstanceUID), str(ds.SOPInstanceUID)
            except (OSError, AttributeError, pydicom.errors.InvalidDicomError) as e:
                raise DicomwebError(f"{path} cannot be stored: it is not a readable DICOM file with a study and "
                                    f"instance UID ({type(e).__name__}); write the outputs again") from None
            datasets.append((check_uid(study_uid), check_uid(sop_uid, "SOP Instance UID"), ds))
        stored: list[str] = []
        there: list[str] = []
        for study_uid, sop_uid, ds in datasets:
            if sop_uid in stored or sop_uid in there:
                continue
            if self._has_instance(study_uid, sop_uid):
                there.append(sop_uid)
                continue
            with self._asking(f"storing instance {sop_uid} in study {study_uid}"):
                answer = self._client.store_instances([ds], study_instance_uid=study_uid)
            failed = getattr(answer, "FailedSOPSequence", None) or []
            if failed:
                reason = getattr(failed[0], "FailureReason", "?")
                raise DicomwebError(f"the DICOMweb server at {self.url} refused to store instance {sop_uid} "
                                    f"(failure reason {reason}): check the server's log")
            stored.append(sop_uid)
            log.info("stored instance %s in study %s", sop_uid, study_uid)
        return StoreResult(tuple(stored), tuple(there))


def _session() -> Any:
    """Return a requests session that sends QIDO-RS wildcards (``*``, ``?``) unescaped in the query.

    dicomweb-client escapes them (``%2A``, ``%3F``); RFC 3986 allows both forms in a query, but
    Orthanc 1.10's DICOMweb plugin does not unescape query values, so ``BodyPartExamined=*SPINE*``
    matched nothing there.
    """
    import requests

    class WildcardSession(requests.Session):
        def send(self, request: Any, **kwargs: Any) -> Any:
            if request.url and "?" in request.url:
                path, query = request.url.split("?", 1)
                request.url = path + "?" + query.replace("%2A", "*").replace("%3F", "?")
            return super().send(request, **kwargs)

    return WildcardSession()


class _NotDicomweb(Exception):
    """An answer that is JSON but not DICOM JSON (e.g. Orthanc's own REST API at the URL given)."""


def _write_instance(ds: Any, folder: Path) -> Path:
    """Write ``ds`` as ``folder/<SOPInstanceUID>.dcm``: a ``.partial`` file first, renamed once whole."""
    uid = check_uid(str(ds.SOPInstanceUID), "SOP Instance UID")
    final = folder / f"{uid}.dcm"
    partial = folder / f"{uid}.dcm{PARTIAL_SUFFIX}"
    try:
        ds.save_as(partial, enforce_file_format=True)
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)
    return final

