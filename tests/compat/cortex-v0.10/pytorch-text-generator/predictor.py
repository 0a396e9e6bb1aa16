import os
import tempfile

import requests
import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

# Cortex's example called GPT2Tokenizer/GPT2LMHeadModel.from_pretrained("distilgpt2"), a
# download. Here the tokenizer reads GPT-2-format vocabulary files fetched over HTTP (from
# COMPAT_FILES_URL in the tests) and the model is a small GPT-2, randomly initialised.
FILES = os.environ.get("COMPAT_FILES_URL", "https://openaipublic.blob.core.windows.net/gpt-2/models/124M")
with tempfile.TemporaryDirectory() as folder:  # read once by the tokenizer: gone once it is made
    for name in ("encoder.json", "vocab.bpe"):
        with open(os.path.join(folder, name), "wb") as out:
            out.write(requests.get(f"{FILES}/{name}").content)
    tokenizer = GPT2Tokenizer(os.path.join(folder, "encoder.json"), os.path.join(folder, "vocab.bpe"))
torch.manual_seed(0)
config = GPT2Config(
    vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=2, n_head=2, bos_token_id=None, eos_token_id=None
)
model = GPT2LMHeadModel(config)
model.eval()


def init(model_path, metadata):
    model.to(metadata["device"])


def keep_top_p(logits, top_p=0.9):
    """Nucleus filtering: drop the least likely tokens beyond a cumulative probability of top_p."""
    ordered, order = torch.sort(logits, descending=True)
    cumulative = torch.cumsum(torch.softmax(ordered, dim=-1), dim=-1)
    drop = cumulative > top_p
    drop[1:] = drop[:-1].clone()
    drop[0] = False
    logits[order[drop]] = -float("inf")
    return logits


def sample_sequence(tokens, length, device, seed=0):
    generator = torch.Generator(device=device).manual_seed(seed)  # one answer per prompt
    generated = torch.tensor([tokens], dtype=torch.long, device=device)
    with torch.no_grad():
        for _ in range(length):
            logits = model(input_ids=generated[:, -config.n_positions + 1 :]).logits[0, -1, :]
            probabilities = torch.softmax(keep_top_p(logits), dim=-1)
            following = torch.multinomial(probabilities, num_samples=1, generator=generator)
            generated = torch.cat((generated, following.unsqueeze(0)), dim=1)
    return generated


def predict(sample, metadata):
    tokens = tokenizer.encode(sample["text"])
    output = sample_sequence(tokens, metadata.get("num_words", 20), metadata["device"])
    return tokenizer.decode(output[0].tolist(), skip_special_tokens=True)
