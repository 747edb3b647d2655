"""Numpy references of both cells and the loss, min-char-rnn style: the post's equations, one step at a time.

The TF graphs compute the same things in a faster order (hoisted matmuls); these are the oracles.
"""
import numpy as np

ACT = {"relu": lambda z: np.maximum(z, 0.0), "tanh": np.tanh}


def combine(xU, hW, how):
    if how == "concat":
        return np.concatenate([xU, hW], axis=1)
    return xU + hW if how == "add" else xU * hW


def softmax(logits):
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def arch1_forward(x, h, w, how, act):
    """x: one-hot [T, B, 27]; h: [B, H]; w: dict U, W, b, V, c. Returns (logits [T, B, 27], last h)."""
    logits = []
    for t in range(len(x)):
        h = ACT[act](combine(x[t] @ w["U"], h @ w["W"], how) + w["b"])  # h_t = act(combine(x_t U, h_{t-1} W) + b)
        logits.append(h @ w["V"] + w["c"])  # logits_t = h_t V + c
    return np.stack(logits), h


def arch2_forward(x, p, w, how, act, teacher=None):
    """Arch 2: p is the previous output [B, 27]. teacher: the true previous targets [T, B, 27] to feed instead
    of the model's own softmax (teacher forcing); p is used at t = 0 either way. Returns (logits, last p)."""
    logits = []
    for t in range(len(x)):
        h = ACT[act](combine(x[t] @ w["U"], p @ w["W"], how) + w["b"])
        logits.append(h @ w["V"] + w["c"])
        p = teacher[t] if teacher is not None else softmax(logits[-1])
    return np.stack(logits), p


def cross_entropy(logits, labels):
    """Mean softmax cross-entropy in nats over every step and stream; labels one-hot like logits."""
    z = logits - logits.max(axis=-1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return float(-(labels * log_probs).sum(axis=-1).mean())


def numeric_gradient(f, w, eps=1e-6):
    """Central-difference gradient of the scalar f() with respect to every entry of the arrays in w."""
    grads = {}
    for name, value in w.items():
        g = np.zeros_like(value)
        for i in np.ndindex(value.shape):
            old = value[i]
            value[i] = old + eps
            up = f()
            value[i] = old - eps
            down = f()
            value[i] = old
            g[i] = (up - down) / (2 * eps)
        grads[name] = g
    return grads
