"""Reference data shared by the services: agencies, need domains, languages (and, in the same
place, municipalities and regions). Data files live in ``referencedata/data/`` with their
source, date and licence (see ``referencedata/README.md``); each loader validates its file and
refuses to load a wrong one, naming the place. No service imports another service for these.
"""

from .agencies import Agency, AgencyKind, Directory, load_directory, parse_directory
from .errors import DirectoryError, InvalidQuery, ReferenceDataError
from .languages import CLIENT_LANGUAGES, ISO_639_1
from .need_domains import NEED_DOMAINS, NeedDomain

__all__ = [
    "Agency",
    "AgencyKind",
    "CLIENT_LANGUAGES",
    "Directory",
    "DirectoryError",
    "ISO_639_1",
    "InvalidQuery",
    "NEED_DOMAINS",
    "NeedDomain",
    "ReferenceDataError",
    "load_directory",
    "parse_directory",
]
