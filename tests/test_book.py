"""Tests of bridge.book: book state, the CRC32 checksum (bitfinex-ws-v2.md §7) and raw tokens.

Frames are literal Bitfinex text, parsed with orjson as in production; the raw number texts
come from :func:`number_tokens` of the same text, so each test also checks the token/entry
alignment the protocol layer relies on.
"""

from __future__ import annotations

import ast
import random
from decimal import Decimal
from itertools import zip_longest
from pathlib import Path

import orjson
import pytest

from bridge import book as book_module
from bridge.book import CHECKSUM_DEPTH, Book, number_tokens

# -- helpers -------------------------------------------------------------------------------


def feed(book: Book, frame: str) -> None:
    """Apply a book frame (snapshot, single update or bulk batch) with its raw texts."""
    payload = orjson.loads(frame)[1]
    tokens = number_tokens(frame)[1:]  # drop the chanId; trailing SEQ/MTS stay unused
    entries = payload if not payload or isinstance(payload[0], list) else [payload]
    position = 0
    for entry in entries:
        book.apply(entry, tokens[position : position + len(entry)])
        position += len(entry)


def apply_texts(book: Book, *texts: str) -> None:
    """Apply one entry given as its wire texts, e.g. ``apply_texts(b, "7e-7", "1", "10")``."""
    book.apply([orjson.loads(t) for t in texts], texts)


def fixed(text: str) -> str:
    """A number re-formatted in fixed notation -- the wrong way (§7.2)."""
    return format(Decimal(text), "f")


# -- V1: tXRPBTC, bitfinex-api-go tests/integration/v2/mock_ws_public_test.go --------------

V1_SNAPSHOT = (
    "[81757,[[0.0000011,13,271510.49],[0.00000109,4,500793.10790141],[0.00000108,5,776367.43],"
    "[0.00000107,1,23329.54842056],[0.00000106,3,116868.87735849],[0.00000105,3,205000],"
    "[0.00000103,3,227308.25386407],[0.00000102,2,105000],[0.00000101,1,2970],"
    "[0.000001,2,21000],[7e-7,1,10000],[6.6e-7,1,10000],[6e-7,1,100000],[4.9e-7,1,10000],"
    "[2.5e-7,1,2000],[6e-8,1,100000],[5e-8,1,200000],[1e-8,4,640000],"
    "[0.00000111,1,-4847.13],[0.00000112,7,-528102.69042633],[0.00000113,5,-302397.07],"
    "[0.00000114,3,-339088.93],[0.00000126,4,-245944.06],[0.00000127,1,-5000],"
    "[0.0000013,1,-5000],[0.00000134,1,-8249.18938656],[0.00000136,1,-13161.25184766],"
    "[0.00000145,1,-2914],[0.0000015,3,-54448.5],[0.00000152,2,-5538.54849594],"
    "[0.00000153,1,-62691.75475079],[0.00000159,1,-2914],[0.0000016,1,-52631.10296831],"
    "[0.00000164,1,-4000],[0.00000166,1,-3831.46784605],[0.00000171,1,-14575.17730379],"
    "[0.00000174,1,-3124.81815395],[0.0000018,1,-18000],[0.00000182,1,-16000],"
    "[0.00000186,1,-4000],[0.00000189,1,-10000.686624],[0.00000191,1,-14500],"
    "[0.00000193,1,-2422]]]"
)
V1_UPDATE = "[81757,[0.0000011,12,266122.94]]"
# The verbatim preimage of bitfinex-ws-v2.md §7.3 (18 bids, 25 asks: 43 pairs).
V1_PREIMAGE = (
    "0.0000011:266122.94:0.00000111:-4847.13:0.00000109:500793.10790141:0.00000112:"
    "-528102.69042633:0.00000108:776367.43:0.00000113:-302397.07:0.00000107:23329.54842056:"
    "0.00000114:-339088.93:0.00000106:116868.87735849:0.00000126:-245944.06:0.00000105:205000:"
    "0.00000127:-5000:0.00000103:227308.25386407:0.0000013:-5000:0.00000102:105000:"
    "0.00000134:-8249.18938656:0.00000101:2970:0.00000136:-13161.25184766:0.000001:21000:"
    "0.00000145:-2914:7e-7:10000:0.0000015:-54448.5:6.6e-7:10000:0.00000152:-5538.54849594:"
    "6e-7:100000:0.00000153:-62691.75475079:4.9e-7:10000:0.00000159:-2914:2.5e-7:2000:"
    "0.0000016:-52631.10296831:6e-8:100000:0.00000164:-4000:5e-8:200000:0.00000166:"
    "-3831.46784605:1e-8:640000:0.00000171:-14575.17730379:0.00000174:-3124.81815395:"
    "0.0000018:-18000:0.00000182:-16000:0.00000186:-4000:0.00000189:-10000.686624:"
    "0.00000191:-14500:0.00000193:-2422"
)

# -- V2 / V3: bitfinex-api-py branch v2 bfxapi/tests/test_ws_orderbook.py ------------------

V2_SNAPSHOT = (
    "[123, [[0.00000121,5,249013.0209708],[0.0000012,6,518315.33310128],"
    "[0.00000119,4,566200.89],[0.00000118,2,260000],[0.00000117,1,100000],"
    "[0.00000116,2,160000],[0.00000114,1,60000],[0.00000113,2,198500],[0.00000112,1,60000],"
    "[0.0000011,1,60000],[0.00000106,2,113868.87735849],[0.00000105,2,105000],"
    "[0.00000103,1,3000],[0.00000102,2,105000],[0.00000101,2,202970],[0.000001,2,21000],"
    "[7e-7,1,10000],[6.6e-7,1,10000],[6e-7,1,100000],[4.9e-7,1,10000],[2.5e-7,1,2000],"
    "[6e-8,1,100000],[5e-8,1,200000],[1e-8,4,640000],[0.00000122,7,-312043.19],"
    "[0.00000123,6,-415094.8939744],[0.00000124,5,-348181.23],[0.00000125,1,-12000],"
    "[0.00000126,2,-143872.31],[0.00000127,1,-5000],[0.0000013,1,-5000],"
    "[0.00000134,1,-8249.18938656],[0.00000135,2,-230043.1337899],"
    "[0.00000136,1,-13161.25184766],[0.00000145,1,-2914],[0.0000015,3,-54448.5],"
    "[0.00000152,2,-5538.54849594],[0.00000153,1,-62691.75475079],[0.00000159,1,-2914],"
    "[0.0000016,1,-52631.10296831],[0.00000164,1,-4000],[0.00000166,1,-3831.46784605],"
    "[0.00000171,1,-14575.17730379],[0.00000174,1,-3124.81815395],[0.0000018,1,-18000],"
    "[0.00000182,1,-16000],[0.00000186,1,-4000],[0.00000189,1,-10000.686624],"
    "[0.00000191,1,-14500]]]"
)
V2_UPDATES = ("[123,[0.00000121,4,228442.6609708]]", "[123,[0.00000121,6,304023.8109708]]")

V3_SNAPSHOT = (
    "[123, [[0.0000886,1,1060.55466114],[0.00008859,1,1000],[0.00008858,1,2713.47159343],"
    "[0.00008857,1,4276.92870916],[0.00008856,2,6764.75562319],[0.00008854,1,5641.48532401],"
    "[0.00008853,1,2255.92632223],[0.0000885,1,2256.69584601],[0.00008848,2,3630.3],"
    "[0.00008845,1,28195.70625766],[0.00008844,1,15571.7],[0.00008843,1,2500],"
    "[0.00008841,1,64196.16117814],[0.00008838,1,7500],[0.00008837,2,2764.12999012],"
    "[0.00008834,2,10886.476298],[0.00008831,1,20000],[0.0000883,1,1000],"
    "[0.00008829,2,2517.22175358],[0.00008828,1,450.45],[0.00008827,1,13000],"
    "[0.00008824,1,1500],[0.0000882,1,300],[0.00008817,1,3000],[0.00008816,1,100],"
    "[0.00008864,1,-481.8549041],[0.0000887,2,-2141.77009092],[0.00008871,1,-2256.45433182],"
    "[0.00008872,1,-2707.58122743],[0.00008874,1,-5640.31794092],"
    "[0.00008876,1,-29004.93294912],[0.00008878,1,-2500],[0.0000888,1,-20000],"
    "[0.00008881,2,-2880.15595827],[0.00008882,1,-27705.42933984],"
    "[0.00008883,1,-4509.83708214],[0.00008884,1,-1500],[0.00008885,1,-2500],"
    "[0.00008888,1,-902.91405442],[0.00008889,1,-900],[0.00008891,1,-7500],"
    "[0.00008894,1,-775.08564697],[0.00008896,1,-150],[0.00008899,3,-11628.02590049],"
    "[0.000089,2,-1299.7],[0.00008902,2,-4841.8],[0.00008904,3,-25320.46250083],"
    "[0.00008909,1,-14000],[0.00008913,1,-123947.999],[0.00008915,2,-28019.6]]]"
)
V3_UPDATES = (
    "[123,[0.00008915,0,-1]]",
    "[123,[0.00008837,1,56.54876269]]",
    "[123,[0.00008873,1,-15699.9]]",
)

# -- real R0 snapshot: bitfinex-api-node test/fixtures/response-ws2-server-order-book-R0.json

R0_SNAPSHOT = (
    "[999,[[2567606289,1876.5,1.4305],[2567590859,1876.1,0.99670598],[2567602139,1876.1,1],"
    "[2567605297,1875.1,4.76123353],[2567605344,1875.1,0.01],[2567519477,1875,15],"
    "[2567552066,1875,0.01],[2567506309,1874.5,0.1],[2567603711,1874.4,1.820442],"
    "[2567477077,1874.2,0.19553],[2567477404,1874.2,0.07873206],[2567472587,1873.8,0.136159],"
    "[2567602057,1873.6,1.58],[2566800765,1873,1],[2567601717,1873,1.82726983],"
    "[2566876255,1872.6,0.0641877],[2567601259,1872.2,1.8],[2567048549,1871.7,0.01252505],"
    "[2567601253,1871.7,0.01252505],[2567606086,1871.7,1.50318748],[2566877752,1871.5,2.01],"
    "[2567606069,1871.5,4.8],[2567606105,1871,4.8],[2566874995,1870.9,2.0822],"
    "[2566863093,1870.7,0.1],[2567594844,1878.1,-0.42265059],[2567600874,1878.3,-0.1],"
    "[2567604766,1878.3,-1],[2567593507,1878.9,-1.662207],[2567598418,1879.5,-1.733],"
    "[2567588789,1879.6,-1.85096707],[2567593692,1880,-2],[2567564697,1880.1,-50],"
    "[2567564825,1880.2,-0.1],[2567587247,1880.3,-1.8071],[2567490789,1881,-1.59002156],"
    "[2567572064,1881,-5],[2567490713,1881.7,-1.79858828],[2567484859,1882.1,-0.1],"
    "[2567490678,1882.4,-2.001883],[2567601620,1882.9,-1.5],[2567484581,1883,-2],"
    "[2567546551,1883,-2],[2567606075,1883.4,-0.28613703],[2567603128,1883.5,-3.95],"
    "[2567474435,1883.7,-1.9],[2567504132,1883.7,-0.04646614],[2567504179,1883.7,-0.13263695],"
    "[2567403182,1884,-0.1],[2567442532,1884.5,-1.9324]]]"
)

# -- real fBTC P0 snapshot, first 15 entries (all bids): bitfinex-api-py#19 log -------------

FBTC_SNAPSHOT = (
    "[106275,[[0.00008101,30,1,-1.18760596],[0.000081,15,1,-10],[0.000081,30,1,-0.1135],"
    "[0.00008002,30,1,-10],[0.00008001,30,2,-19.56218837],[0.00008,30,1,-0.1502],"
    "[0.00007,30,2,-0.2254],[0.00006888,30,1,-0.05],[0.000068,10,1,-8.99651326],"
    "[0.000065,30,1,-0.21],[0.000062,30,1,-3],[0.0000601,30,1,-0.05],[0.00006,30,1,-10],"
    "[0.0000595,7,1,-4.8008663],[0.0000595,30,3,-2.30072588]]]"
)


# -- checksum vectors (§7.3) -----------------------------------------------------------------


def test_v1_preimage_and_checksum() -> None:
    """V1 tXRPBTC snapshot + update hashes to the server's cs -1175357890 (e-notation kept)."""
    book = Book(funding=False, raw=False)
    feed(book, V1_SNAPSHOT)
    feed(book, V1_UPDATE)
    assert book.preimage() == V1_PREIMAGE
    assert book.checksum() == -1175357890
    assert book.entries()[0] == [0.0000011, 12, 266122.94]
    assert len(book) == 43


def test_v1_fixed_notation_gives_the_wrong_checksum() -> None:
    """V1 with numbers re-formatted in fixed notation gives 1293492257, not the server's."""
    book = Book(funding=False, raw=False)
    for frame in (V1_SNAPSHOT, V1_UPDATE):
        payload = orjson.loads(frame)[1]
        tokens = [fixed(t) for t in number_tokens(frame)[1:]]
        for i, entry in enumerate(payload if isinstance(payload[0], list) else [payload]):
            book.apply(entry, tokens[3 * i : 3 * i + 3])
    assert "0.0000007:10000" in book.preimage()
    assert book.checksum() == 1293492257


def test_v2_really_small_numbers() -> None:
    """V2 tVETBTC snapshot + two updates of the best bid hashes to 1770440002."""
    book = Book(funding=False, raw=False)
    feed(book, V2_SNAPSHOT)
    assert len(book) == 49
    for update in V2_UPDATES:
        feed(book, update)
    assert book.preimage().startswith("0.00000121:304023.8109708:0.00000122:-312043.19:")
    assert ":1e-8:640000:" in book.preimage()
    assert book.checksum() == 1770440002


def test_v3_delete_and_adds() -> None:
    """V3 tXRPBTC snapshot, a delete and two adds hashes to 30026640."""
    book = Book(funding=False, raw=False)
    feed(book, V3_SNAPSHOT)
    for update in V3_UPDATES:
        feed(book, update)
    assert [0.00008915, 2, -28019.6] not in book.entries()
    assert [0.00008837, 1, 56.54876269] in book.entries()
    assert book.preimage().startswith("0.0000886:1060.55466114:0.00008864:-481.8549041:")
    assert book.checksum() == 30026640


def test_v4_p_book_sorted_and_interleaved() -> None:
    """V4 P-book fed out of order gives `6000:1:6100:-3:5900:2:6200:-4` and 1756193398."""
    book = Book(funding=False, raw=False)
    for texts in (("6200", "1", "-4"), ("5900", "1", "2"), ("6100", "2", "-3"), ("6000", "1", "1")):
        apply_texts(book, *texts)
    assert book.preimage() == "6000:1:6100:-3:5900:2:6200:-4"
    assert book.checksum() == 1756193398


def test_v4_raw_book_uses_order_ids_with_id_ties() -> None:
    """V4 R0: ids and amounts, equal prices ordered by id, give 1841538801."""
    book = Book(funding=False, raw=True)
    for texts in (("103", "6100", "-4"), ("101", "6000", "2"), ("102", "6100", "-3")):
        apply_texts(book, *texts)
    apply_texts(book, "100", "6000", "1")
    assert book.preimage() == "100:1:102:-3:101:2:103:-4"
    assert book.checksum() == 1841538801
    assert book.entries() == [[100, 6000, 1], [101, 6000, 2], [102, 6100, -3], [103, 6100, -4]]


def test_formatting_demo_e_notation_vs_fixed() -> None:
    """`1.7e-8` hashed as sent gives 952615146; its fixed form would give -931816132."""
    wire = Book(funding=False, raw=False)
    refmt = Book(funding=False, raw=False)
    for texts in (
        ("6000", "1", "1"),
        ("6100", "1", "-3"),
        ("1.7e-8", "1", "2"),
        ("6200", "1", "-4"),
    ):
        apply_texts(wire, *texts)
        refmt.apply([orjson.loads(t) for t in texts], [fixed(t) for t in texts])
    assert wire.preimage() == "6000:1:6100:-3:1.7e-8:2:6200:-4"
    assert wire.checksum() == 952615146
    assert refmt.preimage() == "6000:1:6100:-3:0.000000017:2:6200:-4"
    assert refmt.checksum() == -931816132


def test_texts_are_hashed_not_the_floats() -> None:
    """The stored raw text is hashed, never Python's repr of the parsed float."""
    book = Book(funding=False, raw=False)
    feed(book, "[204928,[[7e-7,1,10000],[60400,2,-1.50],[1E-7,1,5]],50]")
    assert book.preimage() == "7e-7:10000:60400:-1.50:1E-7:5"
    assert repr(7e-7) == "7e-07"  # what re-formatting would have produced


# -- book rules ---------------------------------------------------------------------------


def test_empty_book_checksum_is_crc_of_empty_string() -> None:
    """An empty snapshot, or a book emptied by deletes, has preimage '' and checksum 0."""
    book = Book(funding=False, raw=False)
    feed(book, "[17082,[]]")
    assert (book.preimage(), book.checksum(), book.entries(), len(book)) == ("", 0, [], 0)
    feed(book, "[17082,[100,1,1]]")
    feed(book, "[17082,[100,0,1]]")
    assert (book.preimage(), book.checksum(), book.entries(), len(book)) == ("", 0, [], 0)


def test_thin_book_skips_missing_entries_without_padding() -> None:
    """With 3 bids and 1 ask the preimage is bid0, ask0, bid1, bid2 and nothing else."""
    book = Book(funding=False, raw=False)
    feed(book, "[1,[[10,1,1],[9,1,2],[8,1,3],[11,1,-4]]]")
    assert book.preimage() == "10:1:11:-4:9:2:8:3"
    only_asks = Book(funding=False, raw=False)
    feed(only_asks, "[1,[[11,1,-4],[12,1,-5]]]")
    assert only_asks.preimage() == "11:-4:12:-5"


def test_only_top_25_per_side_is_hashed_but_all_levels_are_kept() -> None:
    """A len-250 book keeps 500 levels; the checksum covers the 25 best of each side only."""
    levels = [[1000 - i, 1, 1 + i] for i in range(250)] + [
        [1001 + i, 1, -1 - i] for i in range(250)
    ]
    shuffled = levels[:]
    random.Random(7).shuffle(shuffled)
    book = Book(funding=False, raw=False)
    feed(book, orjson.dumps([5, shuffled]).decode())
    pairs = book.preimage().split(":")
    expected: list[str] = []
    for i in range(CHECKSUM_DEPTH):
        expected += [str(1000 - i), str(1 + i), str(1001 + i), str(-1 - i)]
    assert pairs == expected
    assert len(book) == 500
    assert book.entries() == levels
    # The 26th bid moves into the top 25 when the best bid is deleted.
    feed(book, "[5,[1000,0,1]]")
    assert book.preimage().split(":")[-4:] == ["975", "26", "1025", "-25"]


def test_replace_level_keeps_one_entry() -> None:
    """COUNT > 0 on a known price replaces the level in place."""
    book = Book(funding=False, raw=False)
    feed(book, "[1,[[100,1,5],[101,1,-1]]]")
    feed(book, "[1,[100,3,7.5]]")
    assert book.entries() == [[100, 3, 7.5], [101, 1, -1]]
    assert book.preimage() == "100:7.5:101:-1"


def test_delete_uses_the_side_marker() -> None:
    """A trading delete removes the level on the marked side: 1 = bids, -1 = asks."""
    book = Book(funding=False, raw=False)
    feed(book, "[225206,[[283450,1,0.5],[283460,2,-0.25]]]")
    feed(book, "[225206,[283460,0,-1],23]")
    assert book.entries() == [[283450, 1, 0.5]]
    feed(book, "[225206,[283450,0,1],24]")
    assert book.entries() == []


def test_delete_of_unknown_level_is_ignored() -> None:
    """Deleting a price not in the book (or on the other side) changes nothing."""
    book = Book(funding=False, raw=False)
    feed(book, "[1,[[100,1,5],[101,1,-1]]]")
    before = (book.entries(), book.preimage())
    feed(book, "[1,[99,0,1]]")
    feed(book, "[1,[100,0,-1]]")  # 100 is a bid, the marker says ask
    assert (book.entries(), book.preimage()) == before


def test_level_crossing_sides_leaves_no_stale_copy() -> None:
    """A price re-added on the other side is moved, not duplicated."""
    book = Book(funding=False, raw=False)
    feed(book, "[1,[[100,1,5],[101,1,-1]]]")
    feed(book, "[1,[100,2,-3]]")
    assert book.entries() == [[100, 2, -3], [101, 1, -1]]
    feed(book, "[1,[101,1,4]]")
    assert book.entries() == [[101, 1, 4], [100, 2, -3]]
    assert book.preimage() == "101:4:100:-3"


def test_bulk_update_batch_applies_in_order() -> None:
    """A BULK_UPDATES batch (array of entries) is applied entry by entry, in order (§6)."""
    book = Book(funding=False, raw=False)
    feed(book, "[646750,[[31115,1,1],[31120,1,-2]],1,1609794291015]")
    feed(book, "[646750,[[31115,0,1],[31110,2,3],[31110,1,4]],2,1609794291016]")
    assert book.entries() == [[31110, 1, 4], [31120, 1, -2]]


def test_clear_forgets_everything() -> None:
    """clear() empties both sides and the order index."""
    book = Book(funding=False, raw=True)
    feed(book, "[9,[[1,100,1],[2,101,-1]]]")
    book.clear()
    assert (len(book), book.entries(), book.preimage()) == (0, [], "")
    feed(book, "[9,[1,102,-2]]")
    assert book.entries() == [[1, 102, -2]]


def test_entries_are_copies() -> None:
    """Mutating the result of entries() does not touch the book."""
    book = Book(funding=False, raw=False)
    feed(book, "[1,[[100,1,5]]]")
    book.entries()[0][2] = 999
    assert book.entries() == [[100, 1, 5]]


# -- funding P books ------------------------------------------------------------------------


def test_funding_levels_keyed_by_rate_and_period() -> None:
    """Real fBTC snapshot: same rate, different periods are two levels, rate desc, period asc."""
    snapshot = orjson.loads(FBTC_SNAPSHOT)[1]
    book = Book(funding=True, raw=False)
    feed(book, FBTC_SNAPSHOT)
    assert book.entries() == snapshot  # the server's own order
    assert book.preimage().startswith("0.00008101:-1.18760596:0.000081:-10:0.000081:-0.1135:")
    feed(book, "[106275,[0.000081,15,0,-1]]")  # delete bid (rate, period 15)
    assert [0.000081, 15, 1, -10] not in book.entries()
    assert [0.000081, 30, 1, -0.1135] in book.entries()
    assert len(book) == 14


def test_funding_sides_are_inverted() -> None:
    """Funding: AMOUNT < 0 is a bid (rate desc), > 0 an ask/offer (rate asc); markers too."""
    book = Book(funding=True, raw=False)
    feed(
        book, "[7,[[0.0002,2,1,-5],[0.0003,2,1,-6],[0.0005,30,1,8],[0.0004,2,1,7],[0.0004,30,1,9]]]"
    )
    assert book.preimage() == "0.0003:-6:0.0004:7:0.0002:-5:0.0004:9:0.0005:8"
    feed(book, "[7,[0.0004,2,0,1]]")  # delete the offer (0.0004, 2)
    feed(book, "[7,[0.0003,2,0,-1]]")  # delete the bid (0.0003, 2)
    assert book.entries() == [[0.0002, 2, 1, -5], [0.0004, 30, 1, 9], [0.0005, 30, 1, 8]]


# -- raw books R0 ---------------------------------------------------------------------------


def test_raw_snapshot_order_matches_the_server() -> None:
    """Real R0 snapshot fed shuffled comes back in the server's order (price, then id)."""
    snapshot = orjson.loads(R0_SNAPSHOT)[1]
    tokens = number_tokens(R0_SNAPSHOT)[1:]
    indexed = list(enumerate(snapshot))
    random.Random(3).shuffle(indexed)
    book = Book(funding=False, raw=True)
    for i, entry in indexed:
        book.apply(entry, tokens[3 * i : 3 * i + 3])
    assert book.entries() == snapshot
    assert book.preimage().startswith(
        "2567606289:1.4305:2567594844:-0.42265059:2567590859:0.99670598:2567600874:-0.1:"
    )


def test_raw_order_moves_price_and_side() -> None:
    """An R0 order re-sent at a new price moves; a PRICE of 0 removes it, unknown ids ignored."""
    book = Book(funding=False, raw=True)
    feed(book, "[648087,[[55895794256,31107,0.07799627],[55895794300,31110,-1]]]")
    feed(book, "[648087,[55895794256,31108,0.07799627],4,1609794565952]")
    assert book.entries() == [[55895794256, 31108, 0.07799627], [55895794300, 31110, -1]]
    feed(book, "[648087,[55895794256,31112,-0.5]]")  # now an ask, behind the other one
    assert book.preimage() == "55895794300:-1:55895794256:-0.5"
    feed(book, "[648087,[99,0,1]]")  # unknown id
    feed(book, "[648087,[55895794300,0,-1]]")
    assert book.entries() == [[55895794256, 31112, -0.5]]
    assert isinstance(book.entries()[0][0], int) and book.entries()[0][0] > 2**32


def test_funding_raw_book() -> None:
    """Funding R0 [OFFER_ID, PERIOD, RATE, AMOUNT]: inverted sides, RATE 0 removes the offer."""
    book = Book(funding=True, raw=True)
    feed(book, "[8,[[41,2,0.0002,-10],[40,30,0.0002,-20],[42,2,0.0003,5],[43,2,0.0001,-1]]]")
    assert book.preimage() == "40:-20:42:5:41:-10:43:-1"
    feed(book, "[8,[41,2,0,-1]]")
    assert book.entries() == [[40, 30, 0.0002, -20], [43, 2, 0.0001, -1], [42, 2, 0.0003, 5]]


# -- number_tokens --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "tokens"),
    [
        ("[204928,[2e-8,0,1],50]", ["204928", "2e-8", "0", "1", "50"]),
        ("[225206,[283460,0,-1],23]", ["225206", "283460", "0", "-1", "23"]),
        ('[81757,"cs",-1175357890]', ["81757", "-1175357890"]),
        ('[204928,"hb",127]', ["204928", "127"]),
        (
            "[1,[-1.5E+3,1e-7,-2.5e-8,0,-0,0.0000011,12.0]]",
            ["1", "-1.5E+3", "1e-7", "-2.5e-8", "0", "-0", "0.0000011", "12.0"],
        ),
        (
            "[648087,[55895794256,31107,0.07799627],4,1609794565952]",
            ["648087", "55895794256", "31107", "0.07799627", "4", "1609794565952"],
        ),
    ],
)
def test_number_tokens_real_frames(frame: str, tokens: list[str]) -> None:
    """Number tokens come back verbatim, in order: exponents, signs, big ids, trailing seq/mts."""
    assert number_tokens(frame) == tokens
    assert number_tokens(frame.encode()) == tokens


def test_number_tokens_skip_digits_inside_strings() -> None:
    """Digits in JSON strings (symbols, keys, escaped quotes) are not number tokens."""
    liq = (
        '[91684,[["pos",142397657,1574697680828.2002,null,"tBSVUSD",-2.62932,'
        "91.583875238719,null,1,1,null,112.27]]]"
    )
    assert number_tokens(liq) == [
        "91684", "142397657", "1574697680828.2002", "-2.62932", "91.583875238719", "1", "1",
        "112.27",
    ]  # fmt: skip
    event = '{"event":"subscribed","channel":"status","chanId":335856,"key":"deriv:tBTCF0:USTF0"}'
    assert number_tokens(event) == ["335856"]
    assert number_tokens(r'["a\"1,2\"", "3e5", 4, "\\", 5]') == ["4", "5"]
    assert number_tokens("[true,false,null]") == []


def test_pure_module_imports_no_io() -> None:
    """bridge.book imports neither websocket, redis, socket, threading nor time."""
    tree = ast.parse(Path(book_module.__file__).read_text())
    imported = {
        a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    imported |= {
        (n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
    }
    assert not imported & {"websocket", "redis", "socket", "threading", "time"}


class _Reference:
    """The checksum preimage the slow, obvious way (§7.1): a dict per side, sorted at each
    call, pairs interleaved with zip_longest. Levels for P books, orders for R0."""

    def __init__(self, *, funding: bool, raw: bool) -> None:
        self.funding, self.raw = funding, raw
        self.bids: dict[object, tuple[tuple[float, float], str]] = {}
        self.asks: dict[object, tuple[tuple[float, float], str]] = {}

    def apply(self, entry: list[float], texts: list[str]) -> None:
        amount = entry[-1]
        is_bid = amount < 0 if self.funding else amount > 0
        side, other = (self.bids, self.asks) if is_bid else (self.asks, self.bids)
        pair = f"{texts[0]}:{texts[-1]}"
        if self.raw:
            price = entry[2] if self.funding else entry[1]
            self.bids.pop(entry[0], None)
            self.asks.pop(entry[0], None)
            if price != 0:
                side[entry[0]] = ((-price if is_bid else price, entry[0]), pair)
            return
        tie = entry[1] if self.funding else 0
        ident = (entry[0], tie)
        if entry[-2] == 0:
            side.pop(ident, None)
            return
        other.pop(ident, None)
        side[ident] = ((-entry[0] if is_bid else entry[0], tie), pair)

    def preimage(self) -> str:
        bids = [p for _, p in sorted(self.bids.values())][:CHECKSUM_DEPTH]
        asks = [p for _, p in sorted(self.asks.values())][:CHECKSUM_DEPTH]
        return ":".join(p for couple in zip_longest(bids, asks) for p in couple if p)


@pytest.mark.parametrize(("funding", "raw"), [(False, False), (True, False), (False, True),
                                              (True, True)])  # fmt: skip
def test_preimage_matches_a_reference_through_random_updates(funding: bool, raw: bool) -> None:
    """Thousands of random adds, replaces, deletes and side crossings (thin and deep sides,
    unequal lengths) keep the incremental preimage equal to the obvious computation."""
    rng = random.Random(f"{funding}{raw}")
    book, ref = Book(funding=funding, raw=raw), _Reference(funding=funding, raw=raw)
    for step in range(6000):
        price = rng.choice([rng.randint(990, 1010), rng.randint(900, 1100)])
        amount = rng.choice([-1, 1]) * rng.randint(1, 50) / 10
        count = 0 if rng.random() < 0.3 else rng.randint(1, 5)
        if raw:
            oid = rng.randint(1, 120)
            px = 0 if count == 0 else price
            entry = [oid, 2, px, amount] if funding else [oid, px, amount]
        else:
            period = rng.choice([2, 30])
            entry = [price, period, count, amount] if funding else [price, count, amount]
        texts = [str(v) for v in entry]
        book.apply(entry, texts)
        ref.apply(entry, texts)
        if step % 7 == 0:
            assert book.preimage() == ref.preimage(), step
    assert book.preimage() == ref.preimage()
    assert len(book) == len(ref.bids) + len(ref.asks)


def _json_number(rng: random.Random) -> str:
    """A JSON number as JavaScript or any other writer may spell it."""
    sign = rng.choice(["", "-"])
    whole = rng.choice(["0", str(rng.randint(1, 9)), str(rng.randint(10, 10**9))])
    frac = rng.choice(["", "." + str(rng.randint(0, 10**8)).zfill(rng.randint(1, 9))])
    exp = rng.choice(["", "", f"e{rng.choice(['', '-', '+'])}{rng.randint(0, 30)}",
                      f"E-{rng.randint(1, 9)}"])  # fmt: skip
    return sign + whole + frac + exp


def _json_value(rng: random.Random, depth: int = 0) -> str:
    roll = rng.random()
    if depth < 3 and roll < 0.35:
        return "[" + ",".join(_json_value(rng, depth + 1) for _ in range(rng.randint(0, 4))) + "]"
    if roll < 0.42:
        return rng.choice(['"cs"', '"hb"', '"t1e5"', '"a\\"1,2]"', "null", "true", "false"])
    return _json_number(rng)


def test_number_tokens_fast_path_agrees_with_the_scanner() -> None:
    """Frames of numbers, commas and brackets take a split instead of the regex scanner; on
    thousands of random valid JSON frames (with and without strings, literals, empty arrays
    and exponents) both ways give the same tokens, and every token is a number orjson reads
    to the value it parsed."""
    rng = random.Random(11)
    fast = 0
    for _ in range(4000):
        frame = "[" + ",".join(_json_value(rng) for _ in range(rng.randint(1, 5))) + "]"
        expected = [t for t in book_module._TOKEN.findall(frame) if t]
        assert number_tokens(frame) == expected, frame
        assert number_tokens(frame.encode()) == expected, frame
        fast += not frame.encode().translate(None, b"[]").translate(None, b"0123456789.-+eE,")
        numbers: list[object] = []
        stack: list[object] = [orjson.loads(frame)]
        while stack:
            item = stack.pop()
            if isinstance(item, list):
                stack.extend(reversed(item))
            elif isinstance(item, (int, float)) and not isinstance(item, bool):
                numbers.append(item)
        assert [orjson.loads(t) for t in expected] == numbers, frame
    assert fast > 1000  # both paths really ran
