"""GPT-2's byte-level BPE, written for this corpus: text <-> token ids with encoder.json + vocab.bpe.

As in Cortex's example, both files are read from the cortex-examples bucket with boto3 (the
tests answer them from a local S3 server through AWS_ENDPOINT_URL).
"""

import json

import boto3
import regex

# Words, numbers, punctuation runs and whitespace, each with its leading space (GPT-2's split).
PIECES = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def byte_alphabet():
    """Each byte as a visible character: printable Latin-1 bytes stand for themselves, the rest
    (controls, space) are shifted past 255 so that no symbol is whitespace."""
    visible = [b for b in range(256) if 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255]
    table, shifted = {}, 0
    for b in range(256):
        if b in visible:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


class Encoder:
    def __init__(self, vocabulary, merges):
        self.ids = vocabulary
        self.tokens = {index: token for token, index in vocabulary.items()}
        self.ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.to_symbol = byte_alphabet()
        self.to_byte = {symbol: b for b, symbol in self.to_symbol.items()}
        self.memo = {}

    def split(self, piece):
        if piece in self.memo:
            return self.memo[piece]
        parts = list(piece)
        while len(parts) > 1:
            pairs = [(self.ranks.get(pair, float("inf")), i) for i, pair in enumerate(zip(parts, parts[1:]))]
            rank, at = min(pairs)
            if rank == float("inf"):
                break
            parts[at : at + 2] = [parts[at] + parts[at + 1]]
        self.memo[piece] = parts
        return parts

    def encode(self, text):
        ids = []
        for piece in PIECES.findall(text):
            symbols = "".join(self.to_symbol[b] for b in piece.encode("utf-8"))
            ids.extend(self.ids[part] for part in self.split(symbols))
        return ids

    def decode(self, ids):
        symbols = "".join(self.tokens[int(i)] for i in ids)
        return bytes(self.to_byte[s] for s in symbols).decode("utf-8", errors="replace")


def get_encoder():
    s3 = boto3.client("s3")
    vocabulary = json.load(s3.get_object(Bucket="cortex-examples", Key="text-generator/gpt-2/encoder.json")["Body"])
    bpe = s3.get_object(Bucket="cortex-examples", Key="text-generator/gpt-2/vocab.bpe")["Body"].read().decode("utf-8")
    merges = [tuple(line.split()) for line in bpe.splitlines()[1:] if line.strip()]
    return Encoder(vocabulary, merges)
