"""The capturable GEMM: ``a @ b`` as one raw CUDA kernel, for the CUDA-graph path (CuPy
refuses cuBLAS calls during stream capture). Takes the CuPy module as an argument."""

from __future__ import annotations

from typing import Any

from aegis_core.model.errors import BackendError

from .cuda import cuda_errors

_SGEMM_SOURCE = r"""
extern "C" __global__ void aegis_sgemm(
    const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C,
    const int M, const int N, const int K, const int d1, const int d2,
    const int splits, const int kchunk, const int zoff,
    const long long as0, const long long as1, const long long as2,
    const long long ars, const long long acs,
    const long long bs0, const long long bs1, const long long bs2,
    const long long brs, const long long bcs,
    const long long cs0, const long long cs1, const long long cs2,
    const long long crs, const long long ccs)
{
    __shared__ float As[16][65];
    __shared__ float Bs[16][65];
    const int zz = blockIdx.z + zoff;
    const int ks = zz % splits;
    const int b = zz / splits;
    const int i2 = b % d2;
    const int i1 = (b / d2) % d1;
    const int i0 = b / (d2 * d1);
    A += i0 * as0 + i1 * as1 + i2 * as2;
    B += i0 * bs0 + i1 * bs1 + i2 * bs2;
    C += i0 * cs0 + i1 * cs1 + i2 * cs2;
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int tid = ty * 16 + tx;
    const int row0 = blockIdx.x * 64, col0 = blockIdx.y * 64;
    const int kbeg = ks * kchunk;
    const int kend = min(K, kbeg + kchunk);
    float acc[4][4];
    #pragma unroll
    for (int i = 0; i < 4; ++i)
        #pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
    for (int k0 = kbeg; k0 < kend; k0 += 16) {
        #pragma unroll
        for (int l = 0; l < 4; ++l) {
            const int e = tid + l * 256;
            const int r = e >> 4, c = e & 15;
            const int gr = row0 + r, gc = k0 + c;
            As[c][r] = (gr < M && gc < kend) ? A[gr * ars + gc * acs] : 0.0f;
            const int r2 = e >> 6, c2 = e & 63;
            const int gr2 = k0 + r2, gc2 = col0 + c2;
            Bs[r2][c2] = (gr2 < kend && gc2 < N) ? B[gr2 * brs + gc2 * bcs] : 0.0f;
        }
        __syncthreads();
        #pragma unroll
        for (int kk = 0; kk < 16; ++kk) {
            float a[4], bv[4];
            #pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = As[kk][ty + 16 * i];
            #pragma unroll
            for (int j = 0; j < 4; ++j) bv[j] = Bs[kk][tx + 16 * j];
            #pragma unroll
            for (int i = 0; i < 4; ++i)
                #pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * bv[j];
        }
        __syncthreads();
    }
    #pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int r = row0 + ty + 16 * i;
        if (r >= M) continue;
        #pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int c = col0 + tx + 16 * j;
            if (c >= N) continue;
            if (splits == 1) C[r * crs + c * ccs] = acc[i][j];
            else atomicAdd(&C[r * crs + c * ccs], acc[i][j]);
        }
    }
}
"""

MAX_GRID_Y = MAX_GRID_Z = 65535
"""CUDA's limits on gridDim.y and gridDim.z (gridDim.x goes to 2**31 - 1: the row tiles)."""

TARGET_BLOCKS = 264
"""Split the K loop until a GEMM has about this many thread blocks (2 per SM on an H100)."""


class CapturableGemm:
    """``out = a @ b`` (float32, NumPy broadcasting over up to 3 batch dims, any strides) as
    one raw CUDA kernel: 64x64 output tiles, 16x16 threads, split-K with atomics when the
    tiles alone would leave the GPU idle. CuPy refuses cuBLAS calls during stream capture,
    so the CUDA-graph path multiplies with this kernel instead."""

    def __init__(self, cp: Any) -> None:
        self.cp = cp
        with cuda_errors("compiling the GEMM kernel"):
            self.kernel = cp.RawKernel(_SGEMM_SOURCE, "aegis_sgemm")

    def __call__(self, a: Any, b: Any, out: Any) -> None:
        import numpy as np

        cp = self.cp
        if a.dtype != cp.float32 or b.dtype != cp.float32 or out.dtype != cp.float32:
            raise BackendError("the GEMM kernel takes float32 operands only")
        m, k = a.shape[-2:]
        n = b.shape[-1]
        if b.shape[-2] != k or out.shape[-2:] != (m, n) or len(out.shape) > 5:
            raise BackendError(f"GEMM shapes {a.shape} @ {b.shape} -> {out.shape}")
        if -(-n // 64) > MAX_GRID_Y:
            raise BackendError(f"GEMM with {n} output columns: more than the grid allows")
        dims = (1,) * (5 - len(out.shape)) + tuple(out.shape[:-2])
        sa, sb, sc = (_batch_strides(x, dims) for x in (a, b, out))
        tiles = -(-n // 64) * (-(-m // 64))
        batch = dims[0] * dims[1] * dims[2]
        splits = max(1, min(TARGET_BLOCKS // max(1, tiles * batch), -(-k // 64)))
        kchunk = -(-k // splits)
        kchunk = -(-kchunk // 16) * 16
        splits = -(-k // kchunk)
        if splits > 1:
            out.fill(0)
        i32, i64 = np.int32, np.int64
        strides = (*map(i64, sa), *map(i64, sb), *map(i64, sc))
        head = (a, b, out, i32(m), i32(n), i32(k), i32(dims[1]), i32(dims[2]), i32(splits),
                i32(kchunk))  # fmt: skip
        total = batch * splits
        for zoff in range(0, total, MAX_GRID_Z):  # gridDim.z is at most 65535
            grid = (-(-m // 64), -(-n // 64), min(MAX_GRID_Z, total - zoff))
            self.kernel(grid, (16, 16, 1), (*head, i32(zoff), *strides))


def _batch_strides(x: Any, dims: tuple[int, ...]) -> tuple[int, ...]:
    """Element strides (3 batch dims, broadcast dims 0, then row and column) of ``x``."""
    st = [s // x.itemsize for s in x.strides]
    shape, batch = x.shape[:-2], st[:-2]
    pad = 3 - len(shape)
    out = []
    for i in range(3):
        j = i - pad
        out.append(0 if j < 0 or shape[j] == 1 else batch[j])
    return (*out, st[-2], st[-1])


class CapturableCupy:
    """The ``xp`` handed to the kernels on the CUDA-graph path: CuPy, with ``matmul`` done by
    :class:`CapturableGemm` (into ``out=``; nothing allocated)."""

    def __init__(self, cp: Any) -> None:
        self._cp = cp
        self._gemm = CapturableGemm(cp)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cp, name)

    def matmul(self, a: Any, b: Any, out: Any = None) -> Any:
        if out is None:
            raise BackendError("matmul without out= would allocate during capture")
        self._gemm(a, b, out)
        return out
