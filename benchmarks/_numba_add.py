"""``a += b`` compiled with numba: serial and prange (the multi-threaded bandwidth probe)."""

from numba import njit, prange


@njit(cache=True, error_model="numpy")
def add_serial(a, b):
    for i in range(a.shape[0]):
        a[i] += b[i]


@njit(cache=True, error_model="numpy", parallel=True)
def add_parallel(a, b):
    for i in prange(a.shape[0]):
        a[i] += b[i]
