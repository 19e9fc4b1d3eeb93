"""De-identification of a DICOM header per DICOM PS3.15 Annex E, Basic Application Level
Confidentiality Profile (Table E.1-1), as a tested tag list applied with pydicom.

pydicom has no built-in profile. Maintained packages exist (`deid`, `dicognito`) but add
recipe files or fake-identity generation we do not need for one header per export; the
profile's identifying attributes fit in this list, applied recursively into sequences, plus
the profile's blanket rules: private attributes removed, curve and overlay groups
(50xx, 60xx) removed, every remaining person name removed, every UID that identifies an
instance replaced by a deterministic new one. The actions are the profile's codes:
X remove, Z zero-length, D dummy value, U new UID.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

BASIC_PROFILE_NAME = "DICOM PS3.15 E.1 Basic Application Level Confidentiality Profile"
#: CID 7050 code of the Basic Profile, for DeidentificationMethodCodeSequence.
BASIC_PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")

#: Type 1/2 attributes the profile empties (Z) or gives a dummy value (D) but keeps present.
ZERO: tuple[str, ...] = (
    "AccessionNumber", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
    "ReferringPhysicianName", "StudyDate", "StudyTime", "StudyID", "ContentCreatorName",
    "FillerOrderNumberImagingServiceRequest", "PlacerOrderNumberImagingServiceRequest",
    "VerifyingObserverName", "VerifyingOrganization", "ContentDate", "ContentTime",
    "PersonName",
)

#: Attributes the profile removes (X), or lets remove in place of Z/D (X/Z, X/D, X/Z/D).
REMOVE: tuple[str, ...] = (
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "InstitutionCodeSequence",
    "StationName", "OperatorsName", "OperatorIdentificationSequence", "PerformingPhysicianName",
    "PerformingPhysicianIdentificationSequence", "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence", "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence", "RequestingPhysician", "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers", "ReferringPhysicianIdentificationSequence",
    "PatientAddress", "PatientTelephoneNumbers", "OtherPatientIDs", "OtherPatientNames",
    "OtherPatientIDsSequence", "PatientBirthName", "PatientMotherBirthName", "PatientBirthTime",
    "PatientAge", "PatientSize", "PatientWeight", "MedicalRecordLocator", "EthnicGroup", "Occupation",
    "AdditionalPatientHistory", "PatientComments", "MilitaryRank", "BranchOfService",
    "CountryOfResidence", "RegionOfResidence", "PatientReligiousPreference", "MedicalAlerts",
    "Allergies", "LastMenstrualDate", "SmokingStatus", "PregnancyStatus", "SpecialNeeds",
    "PatientState", "PatientInsurancePlanCodeSequence", "PatientPrimaryLanguageCodeSequence",
    "IssuerOfPatientID", "ResponsiblePerson", "ResponsibleOrganization", "PatientSexNeutered",
    "InsurancePlanIdentification", "CurrentPatientLocation", "AdmissionID", "AdmittingDiagnosesDescription",
    "AdmittingDiagnosesCodeSequence", "ServiceEpisodeID", "ServiceEpisodeDescription", "VisitComments",
    "ReasonForTheRequestedProcedure", "RequestedProcedureDescription", "RequestedProcedureID",
    "RequestAttributesSequence", "RequestingService", "ScheduledProcedureStepDescription",
    "PerformedProcedureStepID", "PerformedProcedureStepDescription", "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime", "PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime",
    "ReferencedPatientSequence", "ReferencedStudySequence", "ReferencedImageSequence",
    "ReferencedPerformedProcedureStepSequence", "SourceImageSequence", "ReferencedPatientAliasSequence",
    "StudyDescription", "SeriesDescription", "ProtocolName", "ImageComments", "FrameComments",
    "DerivationDescription", "AcquisitionComments", "ContrastBolusAgent", "InterpretationAuthor",
    "TextComments", "TextString", "DeviceSerialNumber", "DetectorID", "PlateID", "CassetteID",
    "GantryID", "GeneratorID", "StudyComments", "SeriesDate", "SeriesTime", "AcquisitionDate",
    "AcquisitionTime", "AcquisitionDateTime", "OverlayDate", "OverlayTime", "CurveDate", "CurveTime",
    "InstanceCreationDate", "InstanceCreationTime", "InstanceCoercionDateTime", "ConsultingPhysicianName",
    "ModifiedAttributesSequence", "OriginalAttributesSequence", "DigitalSignaturesSequence",
    "DataSetTrailingPadding", "PersonAddress", "PersonTelephoneNumbers", "IdentifyingComments",
    "DischargeDiagnosisDescription", "ActualHumanPerformersSequence", "HumanPerformerName",
    "HumanPerformerOrganization", "ScheduledPerformingPhysicianName", "ScheduledHumanPerformersSequence",
    "OrderEnteredBy", "OrderEntererLocation", "OrderCallbackPhoneNumber", "PerformedLocation",
    "ScheduledProcedureStepLocation", "ScheduledStationName", "PerformedStationName",
    "PerformedStationAETitle", "ScheduledStationAETitle", "ReviewerName", "DistributionName",
    "DistributionAddress", "ContentSequence", "GraphicAnnotationSequence", "AuthorObserverSequence",
    "ParticipantSequence", "CustodialOrganizationSequence", "IconImageSequence", "StorageMediaFileSetUID",
    "ReferencedSOPInstanceUIDInFile", "StorageMediaFileSetID", "PatientTransportArrangements",
    "RequestedContrastAgent", "AdmittingDate", "AdmittingTime", "DischargeDate", "DischargeTime",
)

#: UIDs that name a class, syntax or scheme, not a patient's instance: kept.
KEEP_UIDS: tuple[str, ...] = (
    "SOPClassUID", "MediaStorageSOPClassUID", "TransferSyntaxUID", "ImplementationClassUID",
    "ReferencedSOPClassUID", "CodingSchemeUID", "ContextGroupExtensionCreatorUID",
    "RelatedGeneralSOPClassUID", "OriginalSpecializedSOPClassUID", "PrivateInformationCreatorUID",
)


def hashed_uid(*parts: str) -> str:
    """A `2.25.` UID (PS3.5 B.2: a 128-bit integer) from a SHA-256 of `parts`: the same parts
    give the same UID, and nothing recovers the parts from it. (pydicom's `generate_uid`
    ignores its entropy sources under the 2.25 root, so it cannot be used here.)"""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def _uid_keyword(elem) -> bool:
    return elem.VR == "UI" and elem.keyword not in KEEP_UIDS


def _walk(ds: Dataset, salt: str) -> None:
    for keyword in REMOVE:
        if keyword in ds:
            delattr(ds, keyword)
    for keyword in ZERO:
        if keyword in ds:
            ds.data_element(keyword).value = ""  # zero-length: Type 2 attributes stay present
    for tag in list(ds.keys()):
        elem = ds[tag]
        group = tag.group
        if tag.is_private or 0x5000 <= group <= 0x50FF or (0x6000 <= group <= 0x60FF and tag.element == 0x3000):
            del ds[tag]  # private attributes, curves, overlay data (Basic Profile: X)
        elif elem.VR == "PN" and elem.keyword not in ZERO:
            del ds[tag]  # any other person name identifies someone
        elif elem.VR == "SQ":
            for item in elem.value:
                _walk(item, salt)
        elif _uid_keyword(elem) and elem.value:
            values = elem.value if elem.VM > 1 else [elem.value]
            new = [hashed_uid(salt, str(v)) for v in values]
            elem.value = new if elem.VM > 1 else new[0]  # U: a new UID, the same for the same input


def deidentify(ds: Dataset, *, salt: str) -> Dataset:
    """Apply the Basic Profile in place (and return `ds`). `salt` makes replaced UIDs
    deterministic per export yet unlinkable to the originals without it."""
    _walk(ds, salt)
    if hasattr(ds, "file_meta") and "MediaStorageSOPInstanceUID" in ds.file_meta:
        ds.file_meta.MediaStorageSOPInstanceUID = hashed_uid(salt, str(ds.file_meta.MediaStorageSOPInstanceUID))
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "PS3.15 Basic Profile (lesion-studio tag list)"  # LO: 64 chars
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = BASIC_PROFILE_CODE
    ds.DeidentificationMethodCodeSequence = Sequence([code])
    return ds


def identifying_keywords() -> Iterable[str]:
    """Every attribute keyword the list removes or empties (for tests and documentation)."""
    return tuple(REMOVE) + tuple(ZERO)
