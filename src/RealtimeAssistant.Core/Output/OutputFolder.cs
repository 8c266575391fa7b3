namespace RealtimeAssistant.Output;

/// <summary>What <c>annotate IN -o DIR</c> will do with DIR.</summary>
public enum OutputMode
{
    /// <summary>DIR had no outputs: write new ones.</summary>
    Fresh,
    /// <summary>DIR had outputs and --resume was given: continue after <see cref="OutputPlan.LastFrame"/>.</summary>
    Resume,
    /// <summary>DIR had outputs and --force was given: they were deleted.</summary>
    Overwrite,
}

/// <param name="Existing">On resume, the captions already written (from captions.jsonl).</param>
/// <param name="LastFrame">On resume, the last frame that has a caption (-1 when none did).</param>
public sealed record OutputPlan(OutputMode Mode, string Directory, IReadOnlyList<CaptionEntry> Existing, long LastFrame)
{
    public string Srt => Path.Combine(Directory, OutputFolder.SrtName);
    public string Vtt => Path.Combine(Directory, OutputFolder.VttName);
    public string Jsonl => Path.Combine(Directory, OutputFolder.JsonlName);

    /// <summary>An MP4 cannot be appended to, so a resumed run writes its video beside the first one
    /// (annotated.part2.mp4, part3, …). Fixed when the plan is made, so asking twice gives the same name.</summary>
    public string AnnotatedVideo { get; init; } = Path.Combine(Directory, OutputFolder.VideoName);
}

/// <summary>
/// Decides what to do with an output folder that may hold an earlier run: write fresh, resume
/// from captions.jsonl, or overwrite — and refuses with a clear message when the user said neither.
/// </summary>
public static class OutputFolder
{
    public const string SrtName = "captions.srt";
    public const string VttName = "captions.vtt";
    public const string JsonlName = "captions.jsonl";
    public const string VideoName = "annotated.mp4";
    static readonly string[] Outputs = [SrtName, VttName, JsonlName, VideoName];

    /// <summary>Output files from an earlier run found in <paramref name="dir"/>.</summary>
    public static IReadOnlyList<string> ExistingOutputs(string dir) =>
        Directory.Exists(dir)
            ? Outputs.Where(n => File.Exists(Path.Combine(dir, n)))
                .Concat(Directory.EnumerateFiles(dir, "annotated.part*.mp4").Select(Path.GetFileName).OfType<string>().Order())
                .ToArray()
            : [];

    /// <summary>Looks at DIR and says what to do, without changing anything.</summary>
    public static OutputPlan Plan(string dir, bool force = false, bool resume = false)
    {
        if (force && resume) throw new UserError("--force and --resume contradict each other: pick one");
        if (File.Exists(dir)) throw new UserError($"output folder {dir} is a file");
        var existing = ExistingOutputs(dir);
        if (existing.Count == 0) return new OutputPlan(OutputMode.Fresh, dir, [], -1);
        if (force) return new OutputPlan(OutputMode.Overwrite, dir, [], -1);
        if (!resume)
            throw new UserError($"{dir} already holds outputs of an earlier run ({string.Join(", ", existing)}); " +
                                "pass --resume to continue it or --force to overwrite it");

        var jsonl = Path.Combine(dir, JsonlName);
        if (!File.Exists(jsonl)) throw new UserError($"cannot resume in {dir}: {JsonlName} is missing (use --force to start over)");
        IReadOnlyList<CaptionEntry> entries;
        try { entries = CaptionJsonl.Read(jsonl); }
        catch (FormatException e) { throw new UserError($"cannot resume in {dir}: {e.Message} (use --force to start over)", e); }
        var last = entries.Select(e => e.Frame ?? -1).DefaultIfEmpty(-1).Max();
        return new OutputPlan(OutputMode.Resume, dir, entries, last) { AnnotatedVideo = Path.Combine(dir, NextPart(dir)) };
    }

    static string NextPart(string dir)
    {
        for (int i = 2; ; i++)
        {
            var name = $"annotated.part{i}.mp4";
            if (!File.Exists(Path.Combine(dir, name))) return name;
        }
    }

    /// <summary>Carries out a plan: makes the folder, or deletes the old outputs for an overwrite.</summary>
    public static OutputPlan Prepare(string dir, bool force = false, bool resume = false)
    {
        var plan = Plan(dir, force, resume);
        Directory.CreateDirectory(dir);
        if (plan.Mode == OutputMode.Overwrite)
            foreach (var name in ExistingOutputs(dir)) File.Delete(Path.Combine(dir, name));
        return plan;
    }
}
