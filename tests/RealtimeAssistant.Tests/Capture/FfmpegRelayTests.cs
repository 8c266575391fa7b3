using System.Diagnostics;
using OpenCvSharp;
using RealtimeAssistant.Capture;

namespace RealtimeAssistant.Tests.Capture;

/// <summary>
/// OpenCV's FFmpeg backend opens every capture in the process under one lock. A relay whose
/// ffmpeg has not written yet (a stream still connecting) must not be opened under it, or every
/// other capture (a server's other streams, a chat's video) waits for that stream.
/// </summary>
public class FfmpegRelayTests(ITestOutputHelper log)
{
    [Fact]
    public void ARelayStillWaitingForItsInput_HoldsUpNoOtherCapture_AndGivesUpWhenAsked()
    {
        var ffmpeg = TestMedia.Ffmpeg;
        if (ffmpeg is null) Assert.Skip("no ffmpeg on PATH to relay");
        var dir = TestMedia.TempDir("relay-wait");
        // ffmpeg's input is a FIFO nobody writes into: it waits as for a stream that does not answer.
        var input = Path.Combine(dir, "silent.nut");
        Assert.Equal(0, TestMedia.Run("mkfifo", [input], TimeSpan.FromSeconds(5)).Code);
        var clip = TestMedia.WriteClip(dir);
        using var relay = new FfmpegRelay(ffmpeg, ["-f", "nut", "-i", input]);
        var stop = false;
        var opening = Task.Run(() => relay.Open(() => Volatile.Read(ref stop)));
        Thread.Sleep(500);

        var sw = Stopwatch.StartNew();
        var other = Task.Run(() => { using var c = new VideoCapture(clip, VideoCaptureAPIs.FFMPEG); return c.IsOpened(); });
        var opened = other.Wait(TimeSpan.FromSeconds(10));
        log.WriteLine($"another capture opened in {sw.Elapsed.TotalSeconds:0.00} s while the relay waited");
        Assert.True(opened, "another capture's open waited on the relay's");
        Assert.True(other.Result);
        Assert.False(opening.IsCompleted);

        Volatile.Write(ref stop, true);
        var e = Assert.Throws<AggregateException>(() => opening.Wait(TimeSpan.FromSeconds(10)));
        Assert.IsType<IOException>(e.InnerException);
        // Release ffmpeg's own open of its input, so that it can end.
        using (new FileStream(input, FileMode.Open, FileAccess.ReadWrite)) { }
    }
}
