"""Documented numbers of the Agora Real-Time STT API, as ``Final`` constants.

Each value cites the section of ``shared/spec/agora-stt-api.md`` it comes from.
Stdlib only: the SDK and the emulator both read this module, so it holds facts
about the API and never a wire-format decision of either side.
"""

from __future__ import annotations

from typing import Final

# --- hosts and paths (spec §1, §2) ---------------------------------------------------
DEFAULT_BASE_URL: Final = "https://api.agora.io"
V7_PATH_PREFIX: Final = "/api/speech-to-text/v1/projects/{app_id}"
LEGACY_PATH_PREFIX: Final = "/v1/projects/{app_id}/rtsc/speech-to-text"

# --- environment variables (core issue) ----------------------------------------------
ENV_APP_ID: Final = "AGORA_APP_ID"
ENV_CUSTOMER_ID: Final = "AGORA_CUSTOMER_ID"
ENV_CUSTOMER_SECRET: Final = "AGORA_CUSTOMER_SECRET"
ENV_BASE_URL: Final = "AGORA_STT_BASE_URL"

# --- emulator defaults, also used by the CLI and the README's examples ---------------
EMULATOR_APP_ID: Final = "emulatorapp0000000000000000000000"
EMULATOR_CUSTOMER_ID: Final = "emulator"
EMULATOR_CUSTOMER_SECRET: Final = "emulator-secret"  # the documented emulator secret

# --- legacy builder token (spec §5.1) ------------------------------------------------
TOKEN_TTL_S: Final = 300.0
"""A builder token must start its task within 5 minutes of acquire."""
INSTANCE_ID_MAX_LEN: Final = 64
INSTANCE_ID_PATTERN: Final = r"[A-Za-z0-9_-]+"

# --- v7 join / update limits (spec §4.1, §4.6) --------------------------------------
NAME_MAX_LEN: Final = 64
LANGUAGES_MAX: Final = 4
LEGACY_V5_LANGUAGES_MAX: Final = 2
UID_LANGUAGES_CONFIG_MAX: Final = 5
KEYWORDS_MAX: Final = 500
SUBSCRIBE_AUDIO_UIDS_MAX: Final = 32
UNSUBSCRIBE_AUDIO_UIDS_MAX: Final = 5
TRANSLATE_SOURCES_MAX: Final = 4
TRANSLATE_TARGETS_MAX: Final = 10
LEGACY_TRANSLATE_TARGETS_MAX: Final = 5
CRYPTION_MODES: Final = frozenset(range(9))
CRYPTION_MODES_WITH_SALT: Final = frozenset({7, 8})
SLICE_DURATION_MIN_S: Final = 5
SLICE_DURATION_MAX_S: Final = 28800
FILE_NAME_PREFIX_MAX_LEN: Final = 128
STORAGE_VENDORS: Final = frozenset({1, 2, 3, 5, 6, 7, 8, 11})
STORAGE_VENDOR_S3_COMPATIBLE: Final = 11
STORAGE_VENDOR_AMAZON_S3: Final = 1
AMAZON_S3_REGIONS: Final = frozenset((*range(18), *range(20, 26), 28))
"""spec §9: the ``region`` codes STT caption recording accepts for Amazon S3 (vendor 1):
0..17 (US_EAST_1 .. US_GOV_WEST_1), 20..25 (AP_NORTHEAST_3 .. EU_SOUTH_1), 28
(IL_CENTRAL_1)."""
SSE_VALUES: Final = frozenset({"aes256", "kms"})

# spec §4.1 [CONFLICT]: 5..2592000 (reference pages, OpenAPI in shared/) vs 0..259200
# (newest English OpenAPI, 0 = never stop on idle). The SDK accepts the union 0..2592000
# so that neither reading is refused client-side; the server has the last word.
MAX_IDLE_TIME_MIN_S: Final = 0
MAX_IDLE_TIME_DOCUMENTED_MIN_S: Final = 5
MAX_IDLE_TIME_MAX_S: Final = 2592000
MAX_IDLE_TIME_DEFAULT_S: Final = 30
AGENT_MAX_LIFETIME_S: Final = 259200
"""Newest OpenAPI: a hard 72 h lifetime per agent, even with ``maxIdleTime: 0``."""

# --- update pacing (spec §4.6) -------------------------------------------------------
UPDATE_MIN_INTERVAL_S: Final = 5.0

# --- list (spec §4.7) ----------------------------------------------------------------
LIST_DEFAULT_LIMIT: Final = 20
LIST_DEFAULT_WINDOW_S: Final = 86400
LIST_DEFAULT_STATE: Final = 2

# --- retry advice (spec §6.1, §6.3) -------------------------------------------------
CODE_20_BACKOFF_S: Final = (3.0, 6.0)
CODE_5XX_BACKOFF_S: Final = (1.0, 3.0, 6.0)

# --- notifications (spec §8) ---------------------------------------------------------
NCS_PRODUCT_ID_STT: Final = 20
NCS_EVENT_AGENT_JOINED: Final = 101
NCS_EVENT_AGENT_LEFT: Final = 102
