using OpenCvSharp;

namespace RealtimeAssistant.Capture;

/// <summary>Names the codec behind a capture, for error messages a user can act on.</summary>
internal static class Codecs
{
    public static string Describe(VideoCapture capture)
    {
        var fourcc = FourCc((int)capture.Get(VideoCaptureProperties.FourCC));
        return fourcc.ToLowerInvariant() switch
        {
            "" => "an unknown codec",
            "av01" or "av1 " or "av1" => $"AV1 ({fourcc})",
            "h264" or "avc1" or "x264" => $"H.264 ({fourcc})",
            "hevc" or "hev1" or "hvc1" or "h265" => $"HEVC ({fourcc})",
            "vp80" or "vp08" => $"VP8 ({fourcc})",
            "vp90" or "vp09" => $"VP9 ({fourcc})",
            _ => $"'{fourcc}'",
        };
    }

    static string FourCc(int code)
    {
        if (code == 0) return "";
        Span<char> chars = stackalloc char[4];
        for (int i = 0; i < 4; i++)
        {
            var c = (char)((code >> (8 * i)) & 0xFF);
            chars[i] = char.IsAsciiLetterOrDigit(c) || c == ' ' ? c : '?';
        }
        return new string(chars).TrimEnd();
    }
}
