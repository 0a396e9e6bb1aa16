"""Generates text one word at a time from a character-level Markov model, as a stream."""

import json
import random
import time

model = {}


def init(model_path, metadata):
    global model
    with open(model_path) as file:
        model = json.load(file)


def _next_char(text, rng):
    for order in range(model["order"], -1, -1):  # the longest context seen in training
        following = model["counts"][order].get(text[len(text) - order :] if order else "")
        if following:
            chars = list(following)
            return rng.choices(chars, weights=[following[c] for c in chars])[0]
    return " "


def predict(sample, metadata):
    # Cortex-style {"prompt": ..., "max_tokens": ...} or the generate extension's
    # {"text_input": ..., "parameters": {"max_tokens": ..., "seed": ...}}
    options = {**sample, **sample.get("parameters", {})}
    text = options.get("text_input", options.get("prompt", "Beautiful"))
    rng = random.Random(options.get("seed"))
    delay = float(metadata.get("token_delay", 0))
    word = ""
    for _ in range(int(options.get("max_tokens", 20))):
        while True:  # one token: the characters up to the next space or newline
            char = _next_char(text + word, rng)
            word += char
            if char in " \n" or len(word) > 30:
                break
        time.sleep(delay)
        yield word
        text += word
        word = ""
