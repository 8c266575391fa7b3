using System.Diagnostics;

namespace RealtimeAssistant.Output;

/// <summary>
/// An ffmpeg process fed raw BGR frames on stdin and encoding H.264 into a fragmented MP4.
/// Fragmented ("empty_moov" + a fragment per keyframe, one keyframe a second) because a classic
/// MP4 only becomes playable when its index is written at the end: a killed run would leave
/// nothing watchable, where this loses at most the last second.
/// </summary>
internal sealed class FfmpegPipe : IDisposable
{
    readonly Process process;
    readonly Stream stdin;
    readonly Queue<string> stderrTail = new();
    readonly string output;

    /// <param name="audio">a file whose first audio track goes with the video, from the time given
    /// (the video's first frame's there); its sound is cut or padded with silence to the video's length</param>
    public FfmpegPipe(string ffmpeg, string output, int width, int height, double fps, (string Path, TimeSpan From)? audio = null)
    {
        this.output = output;
        var gop = Math.Max(1, (int)Math.Round(fps));
        var info = Executables.InOwnSession(ffmpeg);
        info.RedirectStandardInput = info.RedirectStandardError = info.RedirectStandardOutput = true;
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        string[] sound = audio is { } a
            // The sound of the frames annotated: from the first one's time, padded with silence and cut to the video.
            ? ["-protocol_whitelist", MediaProbe.Protocols(a.Path), "-ss", a.From.TotalSeconds.ToString("0.######", inv), "-i", a.Path,
               "-map", "0:v:0", "-map", "1:a:0?", "-c:a", "aac", "-b:a", "128k", "-af", "apad", "-shortest"]
            : [];
        foreach (var arg in (string[])
        [
            "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", $"{width}x{height}",
            "-r", fps.ToString("0.######", inv), "-i", "-",
            .. sound,
            // yuv420p needs even sizes: pad odd ones by a pixel rather than fail.
            "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2",
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", gop.ToString(inv),
            // flush_packets: without it finished fragments can sit in ffmpeg's 32 KB write buffer and die with it.
            "-movflags", "+frag_keyframe+empty_moov+default_base_moof", "-flush_packets", "1",
            output,
        ]) info.ArgumentList.Add(arg);
        process = Process.Start(info) ?? throw new UserError($"could not start {ffmpeg} to write {output}");
        // Drain stderr (a full pipe would stall ffmpeg) and keep its end for error messages.
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (stderrTail) { stderrTail.Enqueue(e.Data); if (stderrTail.Count > 20) stderrTail.Dequeue(); }
        };
        process.BeginErrorReadLine();
        process.OutputDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        stdin = process.StandardInput.BaseStream;
    }

    public int ProcessId => process.Id;

    public string Errors { get { lock (stderrTail) return string.Join(" | ", stderrTail); } }

    public void Write(ReadOnlySpan<byte> frame)
    {
        try { stdin.Write(frame); }
        catch (IOException e) { throw new UserError($"ffmpeg stopped taking frames for {output}: {Errors}", e); }
    }

    /// <summary>Closes stdin so ffmpeg finishes the file; kills it if it does not within the timeout.</summary>
    public int Finish(TimeSpan timeout)
    {
        try { stdin.Dispose(); } catch (IOException) { /* ffmpeg already gone; its exit code says why */ }
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            throw new UserError($"ffmpeg did not finish {output} within {timeout.TotalSeconds:0} s; killed");
        }
        process.WaitForExit(); // flushes the async stderr readers
        return process.ExitCode;
    }

    public void Dispose()
    {
        if (!process.HasExited) { try { process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { } }
        process.Dispose();
    }
}
