"""De-identification of a DICOM header per DICOM PS3.15 Annex E, Basic Application Level
Confidentiality Profile (Table E.1-1), applied with pydicom.

The table is not hand-picked: it is the Basic Profile column of Table E.1-1 as shipped,
machine-generated from the standard, by the maintained `dicom-anonymizer` package
(`dicomanonymizer.dicom_anonymization_databases.dicomfields_<release>`; the newest release
it holds is used, and named in DeidentificationMethod). Every attribute of the table gets its
action at every nesting level (inside sequences too), with the alternatives resolved for a
derived Secondary Capture image, which needs none of the source's Type 1/2 attributes:

- X, X/Z, X/D, X/Z/D, X/Z/U*: removed (X);
- Z, Z/D: kept, zero length (Z);
- D: a dummy value of the attribute's VR (a sequence with D is removed);
- U: a new UID, the same for the same input UID and secret (so references stay consistent)
  and unlinkable to the original without the secret;
- K: kept (only through an option).

Blanket rules of the profile: private attributes removed (Retain Safe Private Option: off by
default), curve (50xx) and overlay (60xx) groups removed whole. Stricter than the table (an
output's header must not leak what the table's release did not foresee): any other person
name (PN), date, time or date-time (DA/TM/DT) is removed, and so is any public attribute
unknown to pydicom's data dictionary and the issuers of removed identifiers (`STRICTER_REMOVE`). BurnedInAnnotation is not touched (it describes pixels,
see `dicom_derived`). Pixel data is never inspected: text burned into pixels is not removed.

Options (off by default): `retain_uids` (Retain UIDs Option: U becomes K) and
`retain_safe_private` (Retain Safe Private Option, E.3.10): a private attribute is kept only
when its block's private creator and its element offset are listed in the built-in Table
E.3.10-1 subset (`safe_private.SAFE_PRIVATE_TABLE`), listed by the caller as
`(group, private creator, element offset)`, or declared safe by the dataset itself in its
Private Data Element Characteristics Sequence; its private creator element is kept with it,
every other private attribute is removed. The same offset under another creator is removed.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from pydicom.datadict import dictionary_has_tag, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.uid import PYDICOM_ROOT_UID, generate_uid

from lesion_studio.core.export.safe_private import safe_private_keys

BASIC_PROFILE_NAME = "DICOM PS3.15 E.1 Basic Application Level Confidentiality Profile"
#: CID 7050 codes for DeidentificationMethodCodeSequence.
BASIC_PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")
RETAIN_UIDS_CODE = ("113110", "DCM", "Retain UIDs Option")
RETAIN_SAFE_PRIVATE_CODE = ("113111", "DCM", "Retain Safe Private Option")

#: The table's action codes (dicom-anonymizer list name -> Table E.1-1 code).
_CATEGORIES = {
    "D_TAGS": "D", "Z_TAGS": "Z", "X_TAGS": "X", "U_TAGS": "U", "Z_D_TAGS": "Z/D", "X_Z_TAGS": "X/Z",
    "X_D_TAGS": "X/D", "X_Z_D_TAGS": "X/Z/D", "X_Z_U_STAR_TAGS": "X/Z/U*",
}
#: The one action this module applies for each code of the table (see the module docstring).
RESOLVED = {"D": "D", "Z": "Z", "X": "X", "U": "U", "Z/D": "Z", "X/Z": "X", "X/D": "X", "X/Z/D": "X",
            "X/Z/U*": "X"}
#: File meta attributes that name the sending system: removed.
_META_REMOVE = ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
                "ReceivingApplicationEntityTitle", "SourcePresentationAddress", "SendingPresentationAddress",
                "ReceivingPresentationAddress", "PrivateInformationCreatorUID", "PrivateInformation")
#: Stricter than the table: qualifiers of identifiers the profile removes or empties (Patient ID,
#: Accession Number, order numbers); they name the issuing institution and nothing else.
STRICTER_REMOVE: tuple[str, ...] = (
    "IssuerOfAccessionNumberSequence", "IssuerOfPatientIDQualifiersSequence", "OrderPlacerIdentifierSequence",
    "OrderFillerIdentifierSequence", "LocalNamespaceEntityID", "UniversalEntityID", "UniversalEntityIDType",
)
_STRICTER_TAGS = frozenset(int(tag_for_keyword(k)) for k in STRICTER_REMOVE)
_DUMMY_TEXT = "ANONYMIZED"
_TEXT_VRS = {"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"}
_MAX_LENGTH = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64}


@dataclass(frozen=True)
class ProfileTable:
    """Table E.1-1's Basic Profile column: exact tags and masked (repeating-group) rows."""

    source: str  # e.g. "dicom-anonymizer 2.1.0, DICOM 2026c"
    release: str  # e.g. "2026c"
    exact: dict[int, str]  # tag -> code (D, Z, X, U, Z/D, X/Z, X/D, X/Z/D, X/Z/U*)
    masked: tuple[tuple[int, int, str], ...]  # (value, mask, code): tag & mask == value

    def code_for(self, tag: int) -> str | None:
        """The table's action code for `tag`, or None when the table does not list it."""
        code = self.exact.get(int(tag))
        if code is not None:
            return code
        for value, mask, masked_code in self.masked:
            if int(tag) & mask == value:
                return masked_code
        return None


@functools.lru_cache(maxsize=1)
def basic_profile() -> ProfileTable:
    """Load the newest Table E.1-1 release that `dicom-anonymizer` ships."""
    try:
        from dicomanonymizer import dicom_anonymization_databases as databases
    except ImportError as exc:  # a broken install, not a user error
        raise RuntimeError("the PS3.15 Basic Profile table needs the 'dicom-anonymizer' package "
                           "(pip install dicom-anonymizer)") from exc
    names = sorted(m.name for m in pkgutil.iter_modules(databases.__path__) if m.name.startswith("dicomfields_"))
    if not names:
        raise RuntimeError(f"dicom-anonymizer ships no Table E.1-1 release in {list(databases.__path__)}")
    module = importlib.import_module(f"{databases.__name__}.{names[-1]}")
    exact: dict[int, str] = {}
    masked: list[tuple[int, int, str]] = []
    for category, code in _CATEGORIES.items():
        for row in getattr(module, category):
            if len(row) == 2:
                exact[(row[0] << 16) | row[1]] = code
            else:  # (group, element, group mask, element mask)
                group, element, group_mask, element_mask = row
                masked.append((((group & group_mask) << 16) | (element & element_mask),
                               (group_mask << 16) | element_mask, code))
    try:
        from importlib.metadata import version
        package = f"dicom-anonymizer {version('dicom-anonymizer')}"
    except Exception:  # metadata missing: still name the table release
        package = "dicom-anonymizer"
    release = names[-1].removeprefix("dicomfields_")
    return ProfileTable(source=f"{package}, DICOM {release}", release=release, exact=exact, masked=tuple(masked))


def keywords_with(action: str) -> tuple[str, ...]:
    """Keywords (known to pydicom) of the table rows this module resolves to `action` (X, Z, D or U)."""
    table = basic_profile()
    return tuple(sorted(kw for tag, code in table.exact.items()
                        if RESOLVED[code] == action and (kw := keyword_for_tag(tag))))


def __getattr__(name: str) -> tuple[str, ...]:
    # REMOVE / ZERO / DUMMY / NEW_UID: computed from the table on first use (keeps imports light).
    actions = {"REMOVE": "X", "ZERO": "Z", "DUMMY": "D", "NEW_UID": "U"}
    if name in actions:
        return keywords_with(actions[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def identifying_keywords() -> tuple[str, ...]:
    """Every keyword the table lists (for tests and documentation)."""
    return tuple(sorted(kw for tag in basic_profile().exact if (kw := keyword_for_tag(tag))))


def derived_uid(secret: str, *parts: str) -> str:
    """A UID under pydicom's root from a SHA-512 of `secret` and `parts` (PS3.5 B.1 form, 64 chars
    at most): the same inputs give the same UID; without `secret` nothing links it to `parts`."""
    sources = [f"{len(p)}:{p};" for p in (secret, *parts)]  # length-prefixed: no two splits collide
    return str(generate_uid(prefix=PYDICOM_ROOT_UID, entropy_srcs=sources))


def _dummy(elem, secret: str):
    vr = elem.VR
    if vr in _TEXT_VRS:
        return _DUMMY_TEXT[: _MAX_LENGTH.get(vr, 64)]
    return {"DA": "19000101", "TM": "000000", "DT": "19000101000000", "AS": "000D", "DS": "0", "IS": "0",
            "UI": derived_uid(secret, "dummy", elem.keyword or str(elem.tag))}.get(
        vr, 0 if vr in {"US", "SS", "UL", "SL", "FL", "FD", "SV", "UV"} else b"\x00\x00")


def _safe_private_tags(ds: Dataset, safe_private: Collection[tuple[int, str, int]]) -> set[BaseTag]:
    """Private tags of `ds` (one level) that are safe: in Table E.3.10-1 (built in), listed by the
    caller, or declared by the dataset; each with its private creator element."""
    declared: dict[tuple[int, str], set[int] | None] = {}  # (group, creator) -> element offsets or all
    for item in ds.get("PrivateDataElementCharacteristicsSequence", None) or []:
        try:
            key = (int(item.PrivateGroupReference), str(item.PrivateCreatorReference).strip())
            status = str(item.get("BlockIdentifyingInformationStatus", "")).upper()
        except (AttributeError, TypeError, ValueError):
            continue
        if status == "SAFE":
            declared[key] = None
        elif status == "MIXED":
            offsets = item.get("NonidentifyingPrivateElements", None)
            offsets = [] if offsets is None else (offsets if isinstance(offsets, Iterable) else [offsets])
            declared.setdefault(key, set()).update(int(v) & 0xFF for v in offsets)
    listed = safe_private_keys() | {(int(g), str(c).strip(), int(e) & 0xFF) for g, c, e in safe_private}
    safe: set[BaseTag] = set()
    for tag in ds.keys():
        if not tag.is_private or tag.element < 0x1000:
            continue
        creator_tag = Tag(tag.group, tag.element >> 8)
        if creator_tag not in ds:
            continue
        creator = str(ds[creator_tag].value).strip()
        offset = tag.element & 0xFF
        block = declared.get((tag.group, creator), set())
        if block is None or offset in block or (tag.group, creator, offset) in listed:
            safe.add(tag)
            safe.add(creator_tag)
    return safe


def _walk(ds: Dataset, secret: str, table: ProfileTable, retain_uids: bool, retain_safe_private: bool,
          safe_private: Collection[tuple[int, str, int]]) -> None:
    safe = _safe_private_tags(ds, safe_private) if retain_safe_private else set()
    for tag in list(ds.keys()):
        elem = ds[tag]
        group = tag.group
        if tag.is_private:
            if tag not in safe:
                del ds[tag]  # Basic Profile: private attributes X
            continue
        if tag.element == 0 or 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF:
            del ds[tag]  # group lengths; curves and overlays (50xx, 60xx) X
            continue
        code = table.code_for(tag)
        action = "X" if int(tag) in _STRICTER_TAGS else None if code is None else RESOLVED[code]
        if action == "U" and retain_uids:
            action = "K"
        if action == "X" or (action == "D" and elem.VR == "SQ"):
            del ds[tag]
        elif action == "Z":
            elem.value = Sequence() if elem.VR == "SQ" else None  # zero length, still present
        elif action == "D":
            elem.value = _dummy(elem, secret)
        elif action == "U":
            if elem.value:
                values = list(elem.value) if elem.VM > 1 else [elem.value]
                new = [derived_uid(secret, "uid", str(v)) for v in values]
                elem.value = new if elem.VM > 1 else new[0]
        elif action == "K":
            if elem.VR == "SQ":
                for item in elem.value:
                    _walk(item, secret, table, retain_uids, retain_safe_private, safe_private)
        elif elem.VR in ("PN", "DA", "TM", "DT") or not dictionary_has_tag(tag):
            del ds[tag]  # stricter than the table: names, dates and unknown attributes
        elif elem.VR == "SQ":
            for item in elem.value:
                _walk(item, secret, table, retain_uids, retain_safe_private, safe_private)


def deidentify(ds: Dataset, *, uid_secret: str, retain_uids: bool = False, retain_safe_private: bool = False,
               safe_private: Collection[tuple[int, str, int]] = ()) -> Dataset:
    """Apply the Basic Profile in place (and return `ds`).

    `uid_secret` makes replaced UIDs deterministic for one export yet unlinkable to the originals
    without it: pass a random value kept with the export, never a name. The options are those of
    PS3.15 E.3.9 (`retain_uids`) and E.3.10 (`retain_safe_private`; `safe_private` adds rows to
    the built-in Table E.3.10-1 subset). Without `retain_safe_private` every private attribute goes."""
    if not uid_secret:
        raise ValueError("deidentify needs a non-empty uid_secret (a random value kept with the export)")
    table = basic_profile()
    _walk(ds, uid_secret, table, retain_uids, retain_safe_private, safe_private)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        for keyword in _META_REMOVE:
            if keyword in meta:
                delattr(meta, keyword)
        if "MediaStorageSOPInstanceUID" in meta and not retain_uids:
            meta.MediaStorageSOPInstanceUID = derived_uid(uid_secret, "uid", str(meta.MediaStorageSOPInstanceUID))
    ds.PatientIdentityRemoved = "YES"
    ds.LongitudinalTemporalInformationModified = "REMOVED"  # dates and times were removed or emptied
    method = f"PS3.15 E.1-1 Basic Profile, DICOM {table.release}"
    ds.DeidentificationMethod = method[:64]  # LO
    codes = [BASIC_PROFILE_CODE]
    if retain_uids:
        codes.append(RETAIN_UIDS_CODE)
    if retain_safe_private:
        codes.append(RETAIN_SAFE_PRIVATE_CODE)
    items = []
    for value, scheme, meaning in codes:
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, scheme, meaning
        items.append(code)
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    return ds
