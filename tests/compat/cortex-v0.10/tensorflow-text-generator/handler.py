from encoder import get_encoder

encoder = get_encoder()


def pre_inference(sample, signature, metadata):
    tokens = encoder.encode(sample["text"])
    return {"context": [tokens]}


def post_inference(prediction, signature, metadata):
    return encoder.decode(prediction["sample"])
