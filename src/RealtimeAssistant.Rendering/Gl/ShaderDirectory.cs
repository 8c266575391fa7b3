namespace RealtimeAssistant.Rendering;

/// <summary>
/// Finds the GLSL folder at run time. Shaders live in the repository's <c>shaders/</c> folder and
/// are not copied by the build, so we look next to the binaries and then walk up until we meet it.
/// <c>RA_SHADERS</c> overrides the search (for installed copies and for tests).
/// </summary>
public static class ShaderDirectory
{
    public const string EnvVar = "RA_SHADERS";

    /// <summary>A file that every real shaders folder has; it tells ours apart from any other "shaders".</summary>
    private const string Marker = "video.frag";

    public static string Locate()
    {
        string? over = Environment.GetEnvironmentVariable(EnvVar);
        if (!string.IsNullOrEmpty(over))
        {
            if (!File.Exists(Path.Combine(over, Marker)))
                throw new UserError($"{EnvVar}={over} is not a shaders folder (no {Marker} in it)");
            return Path.GetFullPath(over);
        }

        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "shaders");
            if (File.Exists(Path.Combine(candidate, Marker))) return candidate;
        }
        throw new UserError($"shaders folder not found (looked for shaders/{Marker} above {AppContext.BaseDirectory}); set {EnvVar} to the folder");
    }
}
