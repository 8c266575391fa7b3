using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using TorchSharp;

namespace RealtimeAssistant.Model.Kernels;

/// <summary>
/// Runs a kernel's row ranges on libtorch's own intra-op threads. A second pool beside
/// libtorch's OpenMP team oversubscribes the cores: OpenMP's workers spin after each parallel op,
/// and on 2 cores a decode step then ran 10× slower (docs/BENCHMARKS.md). So a kernel enters the
/// very team libtorch uses (libgomp's GOMP_parallel, found in the libgomp libtorch loaded) and
/// the two never compete. Where that library is not found (another OpenMP runtime), the ranges
/// run on .NET's thread pool. One job at a time; a call from inside a job runs inline.
/// </summary>
public static unsafe class KernelPool
{
    static readonly object Gate = new();
    static Action<int, int>? _body;
    static int _count, _grain;
    static Exception? _error;
    [ThreadStatic] static bool _inside;
    static int? _threads;

    static readonly delegate* unmanaged[Cdecl]<delegate* unmanaged[Cdecl]<void*, void>, void*, uint, uint, void> GompParallel;
    static readonly delegate* unmanaged[Cdecl]<int> OmpThreadNum, OmpNumThreads;

    /// <summary>Whether kernels run on libtorch's OpenMP team (else on .NET's thread pool).</summary>
    public static bool OnLibtorchThreads => GompParallel != null && !UseDotnetThreads;

    /// <summary>Takes .NET's thread pool even where libtorch's team is found (tests of that path, measurements).</summary>
    public static bool UseDotnetThreads { get; set; }

    static KernelPool()
    {
        if (!OperatingSystem.IsLinux() || LoadedLibgomp() is not { } path || !NativeLibrary.TryLoad(path, out var lib)) return;
        if (NativeLibrary.TryGetExport(lib, "GOMP_parallel", out var parallel)
            && NativeLibrary.TryGetExport(lib, "omp_get_thread_num", out var num)
            && NativeLibrary.TryGetExport(lib, "omp_get_num_threads", out var count))
        {
            GompParallel = (delegate* unmanaged[Cdecl]<delegate* unmanaged[Cdecl]<void*, void>, void*, uint, uint, void>)parallel;
            OmpThreadNum = (delegate* unmanaged[Cdecl]<int>)num;
            OmpNumThreads = (delegate* unmanaged[Cdecl]<int>)count;
        }
    }

    /// <summary>The libgomp this process has mapped (libtorch's own, loaded with it), if any.</summary>
    static string? LoadedLibgomp()
    {
        torch.get_num_threads(); // makes sure libtorch, and with it its OpenMP runtime, is loaded
        try
        {
            foreach (var line in File.ReadLines("/proc/self/maps"))
            {
                int at = line.IndexOf('/');
                if (at >= 0 && Path.GetFileName(line.AsSpan(at)).StartsWith("libgomp")) return line[at..];
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return null;
    }

    /// <summary>Threads a kernel splits over, the caller's included: <see cref="ThreadsOverride"/>, else libtorch's intra-op count.</summary>
    public static int Threads => _threads ?? torch.get_num_threads();

    /// <summary>Pins the split whatever libtorch's count (tests of the split); null follows libtorch.</summary>
    public static int? ThreadsOverride
    {
        get => _threads;
        set => _threads = value is { } v ? Math.Max(1, v) : null;
    }

    /// <summary>
    /// Calls <paramref name="body"/>(start, end) over [0, count) split into at most
    /// <see cref="Threads"/> contiguous ranges whose bounds are multiples of <paramref name="grain"/>;
    /// fewer when there is too little work (<paramref name="minPerPart"/> items a range).
    /// </summary>
    public static void For(int count, int grain, int minPerPart, Action<int, int> body)
    {
        int parts = Math.Min(Threads, count / Math.Max(1, minPerPart));
        if (_inside) { body(0, count); return; } // a job's own call: its failure is the job's
        if (parts <= 1)
        {
            // One range on this thread fails as a split one does, whatever the thread count.
            try { body(0, count); }
            catch (Exception e) { throw new AggregateException("a kernel range failed", e); }
            return;
        }
        lock (Gate)
        {
            _body = body; _count = count; _grain = Math.Max(1, grain); _error = null;
            try
            {
                if (OnLibtorchThreads) GompParallel(&OmpPart, null, (uint)parts, 0);
                else Parallel.For(0, parts, new ParallelOptions { MaxDegreeOfParallelism = parts }, p => Part(p, parts));
            }
            finally { _body = null; }
            if (_error is { } e) throw new AggregateException("a kernel range failed", e);
        }
    }

    [UnmanagedCallersOnly(CallConvs = new[] { typeof(CallConvCdecl) })]
    static void OmpPart(void* _) => Part(OmpThreadNum(), OmpNumThreads());

    static void Part(int part, int parts)
    {
        bool outer = _inside;
        _inside = true;
        try
        {
            int start = Bound(part, parts), end = Bound(part + 1, parts);
            if (end > start) _body!(start, end);
        }
        catch (Exception e) { _error ??= e; }
        finally { _inside = outer; }
    }

    static int Bound(int part, int parts)
    {
        if (part >= parts) return _count;
        long b = (long)_count * part / parts;
        return (int)Math.Min(_count, b / _grain * _grain);
    }
}
