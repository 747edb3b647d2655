"""The scripts' own sample(), the notebooks' way of sampling, against the numpy reference: a first character
from a random distribution, then each next one drawn from val_probs, the state starting from zeros."""
import numpy as np
import pytest

import arch1_hidden
import arch2_output
import data
import reference
from helpers import hparams, random_weights, session

SMALL = dict(batch_size=3, num_nodes=6, num_unrollings=5, activation="tanh")  # bounded: float32 stays near float64


def replay(module, w, hp, length, seed, start):
    """What sample() must draw with the generator seeded seed, computed with the numpy reference from the
    carried state start: the same draws from the same generator, the probabilities from the equations."""
    rng = np.random.default_rng(seed)
    char_id = data.sample_distribution(data.random_distribution(rng), rng)
    text, state = data.id2char(char_id), start
    for _ in range(length - 1):
        x = np.eye(27)[[[char_id]]]  # [1 step, 1 stream, 27]
        if module is arch1_hidden:
            logits, state = reference.arch1_forward(x, state, w, hp["combine"], hp["activation"])
        else:
            logits, state = reference.arch2_forward(x, state, w, hp["combine"], hp["activation"])
        char_id = data.sample_distribution(reference.softmax(logits[0, 0]), rng)
        text += data.id2char(char_id)
    return text


@pytest.mark.parametrize("module", [arch1_hidden, arch2_output])
def test_sample_starts_from_the_zero_state_and_feeds_each_character_back(module):
    hp = hparams(module, **SMALL)
    model = module.build_graph(hp)
    sess = session(model)
    w = random_weights(sess, model, np.random.default_rng(0), scale=2.0)  # large: the state matters
    width = model.state_size
    drawn = module.sample(sess, model, 60, np.random.default_rng(7))
    assert len(drawn) == 60 and set(drawn) <= set(data.ALPHABET)
    assert drawn == replay(module, w, hp, 60, 7, np.zeros((1, width)))
    # the notebooks started the state from the first character's one-hot instead (Arch 2): another text
    if module is arch2_output:
        first = data.sample_distribution(data.random_distribution(np.random.default_rng(7)), np.random.default_rng(7))
        assert drawn != replay(module, w, hp, 60, 7, np.eye(27)[[first]])
