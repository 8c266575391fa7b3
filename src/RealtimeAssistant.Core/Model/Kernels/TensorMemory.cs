using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model.Kernels;

/// <summary>A CPU tensor's data pointer for the kernels (TorchSharp has no public accessor for it).</summary>
static unsafe partial class TensorMemory
{
    [LibraryImport("LibTorchSharp")]
    private static partial IntPtr THSTensor_data(IntPtr handle);

    /// <summary>The first element of <paramref name="t"/> (storage offset included). The caller keeps t alive and contiguous.</summary>
    public static T* Ptr<T>(Tensor t) where T : unmanaged => (T*)THSTensor_data(t.Handle);
}
