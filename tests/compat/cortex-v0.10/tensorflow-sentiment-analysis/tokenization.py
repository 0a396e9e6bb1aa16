"""BERT-style tokenization (lower-casing, punctuation split, greedy longest-match WordPiece),
written for this corpus in place of the bert-tensorflow package Cortex's example imported."""

import unicodedata

import requests


class WordPieceTokenizer:
    def __init__(self, vocab, do_lower_case=True):
        self.vocab = vocab
        self.do_lower_case = do_lower_case

    @classmethod
    def from_url(cls, url, do_lower_case=True):
        lines = requests.get(url).text.splitlines()
        return cls({token: index for index, token in enumerate(lines) if token}, do_lower_case)

    def words(self, text):
        if self.do_lower_case:
            text = unicodedata.normalize("NFD", text.lower())
            text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        words, current = [], ""
        for char in text:
            if char.isspace() or unicodedata.category(char).startswith("P"):
                if current:
                    words.append(current)
                current = ""
                if not char.isspace():
                    words.append(char)
            else:
                current += char
        return words + ([current] if current else [])

    def tokenize(self, text):
        pieces = []
        for word in self.words(text):
            start, found = 0, []
            while start < len(word):
                end = len(word)
                while end > start:
                    piece = word[start:end] if start == 0 else "##" + word[start:end]
                    if piece in self.vocab:
                        found.append(piece)
                        break
                    end -= 1
                if end == start:
                    found = ["[UNK]"]
                    break
                start = end
            pieces.extend(found)
        return pieces

    def convert_tokens_to_ids(self, tokens):
        return [self.vocab[token] for token in tokens]
