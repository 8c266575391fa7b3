using RealtimeAssistant.Model.Checkpoint;
using TorchSharp;
using TorchSharp.Modules;
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
    /// converted as soon as its weights are read, so loading never holds a second full copy of the
    /// model. A unit's matrices are read as the checkpoint stores them into one storage (a stack's
    /// members at their row offsets) and converted from there: its dense parameters, in the
    /// model's compute dtype, are never written, and a unit stored in the format's own dtype (a
    /// bf16 checkpoint under bf16) is kept as read, with no conversion at all.
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
        var nameOf = parameters.ToDictionary(p => p.Value, p => p.Key, ReferenceEqualityComparer.Instance);
        var unitOf = new Dictionary<Parameter, ICompactable>(ReferenceEqualityComparer.Instance);
        var unread = new Dictionary<ICompactable, int>(ReferenceEqualityComparer.Instance);
        // The units read as stored: each weight's first row in the unit's storage,
        // and that storage (on the CPU, made at the unit's first weight) with its size.
        var rowsAt = new Dictionary<Parameter, long>(ReferenceEqualityComparer.Instance);
        var asStored = new Dictionary<ICompactable, (long Rows, long Columns, ScalarType DType)>(ReferenceEqualityComparer.Instance);
        var storages = new Dictionary<ICompactable, Tensor>(ReferenceEqualityComparer.Instance);
        if (compact is { } format)
            foreach (var unit in Compaction.Units(module))
            {
                var ws = unit.Weights.ToList();
                foreach (var w in ws) unitOf[w] = unit;
                unread[unit] = ws.Count;
                var dtypes = ws.Select(w => weights.StoredType(byModelName[nameOf[w]])).Distinct().ToList();
                // A unit of mixed dtypes, or one that stays dense (its parameters' dtype is the format), reads into its parameters.
                if (dtypes.Count != 1 || ws.Any(w => WeightFormats.Of(w.dtype) == format || w.dim() != 2 || w.size(1) != ws[0].size(1)))
                    continue;
                long at = 0;
                foreach (var w in ws) { rowsAt[w] = at; at += w.size(0); }
                asStored[unit] = (at, ws[0].size(1), dtypes[0]);
            }
        try
        {
            foreach (var (m, p) in parameters)
            {
                unitOf.TryGetValue(p, out var unit);
                if (unit is not null && asStored.TryGetValue(unit, out var size))
                {
                    if (!storages.TryGetValue(unit, out var storage))
                        storages[unit] = storage = torch.empty(new[] { size.Rows, size.Columns }, size.DType);
                    using var block = storage.narrow(0, rowsAt[p], p.size(0));
                    weights.ReadInto(byModelName[m], block, m);
                }
                else weights.ReadInto(byModelName[m], p, m);
                if (unit is null || --unread[unit] > 0) continue;
                if (storages.Remove(unit, out var rows))
                {
                    bool kept = WeightFormats.Of(rows.dtype) == compact;
                    using (rows)
                        if (p.device_type == DeviceType.CPU) unit.Compact(compact!.Value, rows);
                        else { using var moved = rows.to(p.device); unit.Compact(compact!.Value, moved); }
                    if (kept) continue; // nothing of its size was freed
                }
                else unit.Compact(compact!.Value);
                // What the conversion freed stays resident in the C heap otherwise (glibc keeps
                // freed chunks below its mmap threshold) while the next units are read:
                // Qwen2-VL-2B f32 → bf16 ended at 2.05× the bf16 weights resident, and q8 from
                // its bf16 files peaked 500 MB higher.
                NativeHeap.Trim();
            }
            // The parameters of units kept as read were released unwritten, some from the C heap.
            if (asStored.Count > 0) NativeHeap.Trim();
        }
        finally
        {
            foreach (var rows in storages.Values) rows.Dispose();
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
