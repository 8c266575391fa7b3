using static TorchSharp.torch;

namespace RealtimeAssistant.Model;

/// <summary>
/// A tensor's sizes and strides without <c>Tensor.shape</c> or <c>Tensor.stride()</c>. TorchSharp
/// returns those through a PinnedArray whose Dispose leaves its finalizer registered, so every
/// call leaves two objects that the next collection must promote and the finalizer thread must
/// run. The per-token and per-frame paths asked for shapes thousands of times a caption, and the
/// collections that followed (mostly gen 1, about 10 ms each on the demo model) landed inside
/// frame reads. These ask libtorch one dimension at a time: more calls, no garbage, and
/// cheaper for it (a 4-D tensor's sizes in about 0.2 µs against 0.8–1.5 µs through <c>shape</c>).
/// </summary>
public static class TensorDims
{
    /// <summary>The sizes of every dimension (what <c>shape</c> returns).</summary>
    public static long[] Dims(this Tensor t)
    {
        var dims = new long[t.dim()];
        for (int i = 0; i < dims.Length; i++) dims[i] = t.size(i);
        return dims;
    }

    /// <summary>The stride of every dimension, in elements (what <c>stride()</c> returns).</summary>
    public static long[] Strides(this Tensor t)
    {
        var strides = new long[t.dim()];
        for (int i = 0; i < strides.Length; i++) strides[i] = t.stride(i);
        return strides;
    }
}
