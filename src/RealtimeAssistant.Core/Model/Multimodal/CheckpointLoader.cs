using RealtimeAssistant.Model.Checkpoint;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Model;

/// <summary>
/// Reads a checkpoint's tensors into a module whose parameter names mirror HF's module tree.
/// A family maps checkpoint names to its module's names (the naming generations differ only in
/// prefixes) and says which extra tensors it may ignore; anything else missing or unexpected is
/// a one-line error listing them.
/// </summary>
public static class CheckpointLoader
{
    /// <summary>
    /// With <paramref name="compact"/>, each compactable unit (<see cref="Compaction.Units"/>) is
    /// converted as soon as its weights are read and its dense storage freed, so loading never
    /// holds a second full copy of the model.
    /// </summary>
    public static void Load(nn.Module module, SafeTensorsReader weights, Func<string, string> toModelName, Func<string, bool> ignorable, WeightFormat? compact = null)
    {
        var parameters = module.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var byModelName = new Dictionary<string, string>();
        var unexpected = new List<string>();
        foreach (var name in weights.Tensors.Keys)
        {
            var m = toModelName(name);
            if (parameters.ContainsKey(m)) byModelName[m] = name;
            else if (!ignorable(m)) unexpected.Add(name);
        }
        var missing = parameters.Keys.Where(k => !byModelName.ContainsKey(k)).ToList();
        if (missing.Count > 0 || unexpected.Count > 0)
        {
            static string List(List<string> l) => string.Join(", ", l.Take(8)) + (l.Count > 8 ? $" … ({l.Count} in all)" : "");
            var parts = new List<string>();
            if (missing.Count > 0) parts.Add($"missing tensors: {List(missing)}");
            if (unexpected.Count > 0) parts.Add($"unexpected tensors: {List(unexpected)}");
            throw new UserError($"checkpoint does not match the config: {string.Join("; ", parts)}");
        }
        var unitOf = new Dictionary<TorchSharp.Modules.Parameter, ICompactable>(ReferenceEqualityComparer.Instance);
        var unread = new Dictionary<ICompactable, int>(ReferenceEqualityComparer.Instance);
        if (compact is not null)
            foreach (var unit in Compaction.Units(module))
            {
                var ws = unit.Weights.ToList();
                foreach (var w in ws) unitOf[w] = unit;
                unread[unit] = ws.Count;
            }
        foreach (var (m, p) in parameters)
        {
            weights.ReadInto(byModelName[m], p, m);
            if (unitOf.TryGetValue(p, out var unit) && --unread[unit] == 0)
            {
                unit.Compact(compact!.Value);
                // The dense storage just freed stays resident in the C heap (glibc keeps freed chunks
                // below its mmap threshold), and the next units' dense storage is already reserved:
                // without handing it back, loading ends holding both copies (Qwen2-VL-2B f32 → bf16:
                // 2.05× the bf16 weights resident).
                NativeHeap.Trim();
            }
        }
    }
}

/// <summary>Hands freed C-heap pages back to the OS (glibc's malloc_trim); nothing elsewhere.</summary>
public static class NativeHeap
{
    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "malloc_trim")]
    static extern int MallocTrim(nuint pad);

    static bool _unavailable = !OperatingSystem.IsLinux();

    public static void Trim()
    {
        if (_unavailable) return;
        try { MallocTrim(0); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { _unavailable = true; } // not glibc (e.g. musl)
    }
}
