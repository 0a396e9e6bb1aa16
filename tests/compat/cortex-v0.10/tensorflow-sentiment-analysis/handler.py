import os

from tokenization import WordPieceTokenizer

labels = ["negative", "positive"]
MAX_SEQ_LENGTH = 128

# Cortex's handler asked TF-Hub's BERT module for its vocabulary with TF1-only APIs
# (hub.Module, tf.Session); the change for TensorFlow 2 is to read that vocab.txt directly.
# The tests serve it on loopback (COMPAT_FILES_URL).
FILES = os.environ.get("COMPAT_FILES_URL", "https://storage.googleapis.com/bert_models/2018_10_18")
tokenizer = WordPieceTokenizer.from_url(FILES + "/uncased_L-12_H-768_A-12/vocab.txt", do_lower_case=True)


def pre_inference(sample, signature, metadata):
    tokens = ["[CLS]"] + tokenizer.tokenize(sample["review"])[: MAX_SEQ_LENGTH - 2] + ["[SEP]"]
    input_ids = tokenizer.convert_tokens_to_ids(tokens)
    input_ids += [0] * (MAX_SEQ_LENGTH - len(input_ids))
    return {"input_ids": [input_ids]}


def post_inference(prediction, signature, metadata):
    return labels[prediction["labels"][0]]
