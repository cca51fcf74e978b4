"""A byte-level BPE trainer and a reference encoder/decoder for the project's own tokenizer,
written out as a standard Hugging Face tokenizer.json (the form Llama 3's file has: a Split
pre-tokenizer with Llama 3's regex, then ByteLevel without its own regex; a BPE model with a
vocab and "a b" merges; a ByteLevel decoder; special tokens in added_tokens).

Needs Debian's python3-regex (Unicode classes \\p{L}, \\p{N}). Run with /usr/bin/python3.
"""
import heapq
import json
from collections import Counter

import regex

# Llama 3's pre-tokenizer pattern, verbatim.
SPLIT_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_split_re = regex.compile(SPLIT_PATTERN)


def bytes_to_unicode():
    """GPT-2's reversible map from the 256 byte values to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


def pretokenize(text):
    return _split_re.findall(text)


def train_bpe(texts, n_tokens, progress=None):
    """Learns merges over the pre-tokenized words of texts until there are n_tokens tokens
    (the 256 bytes included).

    Words are counted once; merging works on the unique words with incremental pair counts
    and a lazy max-heap (ties broken by the smaller pair of symbol ids, so runs are
    reproducible). Returns (merges, id_bytes): merges as (left_id, right_id) in rank order,
    id_bytes[i] the bytes of token i. A merge whose bytes already exist as a token (made by
    another pair) yields that token's id, as Hugging Face's trainer does, so there can be a
    few more merges than new tokens.
    """
    counts = Counter()
    for t in texts:
        counts.update(pretokenize(t))
    words = [list(w.encode("utf-8")) for w in counts]
    freqs = list(counts.values())
    pair_count = Counter()
    where = {}
    for wi, (w, f) in enumerate(zip(words, freqs)):
        for p in zip(w, w[1:]):
            pair_count[p] += f
            where.setdefault(p, set()).add(wi)
    heap = [(-c, p) for p, c in pair_count.items()]
    heapq.heapify(heap)
    merges = []
    id_bytes = [bytes([i]) for i in range(256)]
    bytes_id = {b: i for i, b in enumerate(id_bytes)}
    while len(id_bytes) < n_tokens and heap:
        negc, p = heapq.heappop(heap)
        c = pair_count.get(p, 0)
        if c <= 0:
            continue
        if -negc != c:
            heapq.heappush(heap, (-c, p))
            continue
        a, b = p
        nb = id_bytes[a] + id_bytes[b]
        new_id = bytes_id.get(nb)
        if new_id is None:
            new_id = len(id_bytes)
            id_bytes.append(nb)
            bytes_id[nb] = new_id
        merges.append(p)
        changed = set()
        for wi in sorted(where.pop(p, ())):
            w = words[wi]
            f = freqs[wi]
            for q in zip(w, w[1:]):
                pair_count[q] -= f
                changed.add(q)
            out = []
            i = 0
            n = len(w)
            while i < n:
                if i + 1 < n and w[i] == a and w[i + 1] == b:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            words[wi] = out
            for q in zip(out, out[1:]):
                pair_count[q] += f
                changed.add(q)
                where.setdefault(q, set()).add(wi)
        pair_count.pop(p, None)
        for q in changed:
            c = pair_count.get(q, 0)
            if c > 0:
                heapq.heappush(heap, (-c, q))
            else:
                pair_count.pop(q, None)
        if progress:
            progress(len(id_bytes))
    return merges, id_bytes


class ByteLevelBPE:
    """Reference encoder/decoder for the tokenizer that train_bpe learns (and that
    tokenizer.json describes): special tokens split first, then the regex pre-tokenizer, then
    BPE by merge rank on each piece's UTF-8 bytes."""

    def __init__(self, merges, special_tokens):
        self.merges = [tuple(m) for m in merges]
        self.id_bytes = [bytes([i]) for i in range(256)]
        bytes_id = {b: i for i, b in enumerate(self.id_bytes)}
        self.merge_to = []
        for a, b in self.merges:
            nb = self.id_bytes[a] + self.id_bytes[b]
            if nb not in bytes_id:
                bytes_id[nb] = len(self.id_bytes)
                self.id_bytes.append(nb)
            self.merge_to.append(bytes_id[nb])
        self.rank = {p: i for i, p in enumerate(self.merges)}
        self.n_base = len(self.id_bytes)
        self.special = {}
        for i, s in enumerate(special_tokens):
            self.special[s] = self.n_base + i
        self.special_by_id = {v: k for k, v in self.special.items()}
        self.vocab_size = self.n_base + len(self.special)
        self._cache = {}
        self._special_re = regex.compile("|".join(regex.escape(s) for s in special_tokens)) \
            if special_tokens else None

    def token_str(self, i):
        if i in self.special_by_id:
            return self.special_by_id[i]
        return "".join(BYTE_TO_CHAR[b] for b in self.id_bytes[i])

    def _encode_word(self, word):
        ids = self._cache.get(word)
        if ids is not None:
            return ids
        ids = list(word.encode("utf-8"))
        rank = self.rank
        while len(ids) > 1:
            best = None
            for p in zip(ids, ids[1:]):
                r = rank.get(p)
                if r is not None and (best is None or r < best):
                    best = r
            if best is None:
                break
            a, b = self.merges[best]
            new_id = self.merge_to[best]
            out = []
            i = 0
            while i < len(ids):
                if i + 1 < len(ids) and ids[i] == a and ids[i + 1] == b:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            ids = out
        self._cache[word] = ids
        return ids

    def encode_ordinary(self, text):
        out = []
        for w in pretokenize(text):
            out.extend(self._encode_word(w))
        return out

    def encode(self, text, add_bos=False, bos_id=None):
        out = [bos_id] if add_bos else []
        if self._special_re is None:
            return out + self.encode_ordinary(text)
        pos = 0
        for m in self._special_re.finditer(text):
            out.extend(self.encode_ordinary(text[pos:m.start()]))
            out.append(self.special[m.group(0)])
            pos = m.end()
        out.extend(self.encode_ordinary(text[pos:]))
        return out

    def decode_bytes(self, ids):
        parts = []
        for i in ids:
            if i in self.special_by_id:
                parts.append(self.special_by_id[i].encode("utf-8"))
            else:
                parts.append(self.id_bytes[i])
        return b"".join(parts)

    def decode(self, ids):
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # -- Hugging Face files ----------------------------------------------------------------

    def tokenizer_json(self, bos_token):
        vocab = {self.token_str(i): i for i in range(self.n_base)}
        assert len(vocab) == self.n_base, "two ids share a token string"
        merges = [f"{self.token_str(a)} {self.token_str(b)}" for a, b in self.merges]
        bos_id = self.special[bos_token]
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": [
                {"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                 "normalized": False, "special": True}
                for s, i in sorted(self.special.items(), key=lambda kv: kv[1])],
            "normalizer": None,
            "pre_tokenizer": {
                "type": "Sequence",
                "pretokenizers": [
                    {"type": "Split", "pattern": {"Regex": SPLIT_PATTERN},
                     "behavior": "Isolated", "invert": False},
                    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                     "use_regex": False},
                ],
            },
            "post_processor": {
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": bos_token, "type_id": 0}},
                           {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": bos_token, "type_id": 0}},
                         {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": bos_token, "type_id": 1}},
                         {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {bos_token: {"id": bos_token, "ids": [bos_id],
                                               "tokens": [bos_token]}},
            },
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                        "use_regex": True},
            "model": {
                "type": "BPE",
                "dropout": None,
                "unk_token": None,
                "continuing_subword_prefix": None,
                "end_of_word_suffix": None,
                "fuse_unk": False,
                "byte_fallback": False,
                "ignore_merges": False,
                "vocab": vocab,
                "merges": merges,
            },
        }

    @staticmethod
    def from_tokenizer_json(path):
        """Reads a tokenizer.json written by tokenizer_json() back (checks the round trip)."""
        with open(path, encoding="utf-8") as f:
            tj = json.load(f)
        vocab = tj["model"]["vocab"]
        inv = {v: k for k, v in vocab.items()}
        for i in range(256):
            assert inv[i] == BYTE_TO_CHAR[i], f"id {i} is not byte {i}"
        merges = []
        for m in tj["model"]["merges"]:
            a, b = m.split(" ")
            merges.append((vocab[a], vocab[b]))
        specials = [t["content"] for t in sorted(tj["added_tokens"], key=lambda t: t["id"])]
        tok = ByteLevelBPE(merges, specials)
        for t in tj["added_tokens"]:
            assert tok.special[t["content"]] == t["id"]
        for s, i in vocab.items():
            assert tok.token_str(i) == s, f"vocab entry {s!r} is not made by the merges"
        return tok
