using RealtimeAssistant.Server;
using RealtimeAssistant.Server.Streams;
using RealtimeAssistant.Tests.Capture;

namespace RealtimeAssistant.Tests.Server;

/// <summary>
/// The allow-list for file sources: a client's path resolves to a real path inside the folder or
/// is refused (403 outside, 400 for no such file); symlinks are followed wherever they sit on the
/// path, relative or absolute, and link loops end.
/// </summary>
public class MediaFolderTests
{
    readonly string _root, _outside;
    readonly MediaFolder _media;

    public MediaFolderTests()
    {
        var top = TestMedia.TempDir("media-folder");
        _root = Path.Combine(top, "media");
        _outside = Path.Combine(top, "outside");
        Directory.CreateDirectory(Path.Combine(_root, "sub", "deeper"));
        Directory.CreateDirectory(_outside);
        File.WriteAllText(Path.Combine(_root, "a.mp4"), "x");
        File.WriteAllText(Path.Combine(_root, "sub", "deeper", "b.mp4"), "x");
        File.WriteAllText(Path.Combine(_outside, "c.mp4"), "x");
        File.CreateSymbolicLink(Path.Combine(_root, "rel-in.mp4"), "sub/deeper/b.mp4");
        File.CreateSymbolicLink(Path.Combine(_root, "rel-out.mp4"), "../outside/c.mp4");
        File.CreateSymbolicLink(Path.Combine(_root, "abs-out.mp4"), Path.Combine(_outside, "c.mp4"));
        Directory.CreateSymbolicLink(Path.Combine(_root, "sub", "up"), "..");                 // a loop through the tree, staying inside
        Directory.CreateSymbolicLink(Path.Combine(_root, "sub", "out"), "../../outside");     // a folder that leads out
        File.CreateSymbolicLink(Path.Combine(_root, "loop1"), "loop2");
        File.CreateSymbolicLink(Path.Combine(_root, "loop2"), "loop1");
        File.CreateSymbolicLink(Path.Combine(_root, "dangling.mp4"), "nothing.mp4");
        // The folder itself reached through a link: its real path is what counts.
        Directory.CreateSymbolicLink(Path.Combine(top, "media-link"), _root);
        _media = new MediaFolder(Path.Combine(top, "media-link"));
    }

    string Real(string p) => MediaFolder.RealPath(Path.GetFullPath(p))!;

    [Fact]
    public void PathsInside_ResolveToTheirRealFile()
    {
        Assert.Equal(Real(Path.Combine(_root)), _media.Root);
        Assert.Equal(Path.Combine(_media.Root, "a.mp4"), _media.Resolve("a.mp4"));
        Assert.Equal(Path.Combine(_media.Root, "sub", "deeper", "b.mp4"), _media.Resolve("sub/deeper/b.mp4"));
        Assert.Equal(Path.Combine(_media.Root, "sub", "deeper", "b.mp4"), _media.Resolve("rel-in.mp4"));
        Assert.Equal(Path.Combine(_media.Root, "a.mp4"), _media.Resolve("sub/up/a.mp4"));
        Assert.Equal(Path.Combine(_media.Root, "a.mp4"), _media.Resolve("sub/deeper/../../a.mp4"));
        Assert.Equal(Path.Combine(_media.Root, "a.mp4"), _media.Resolve(Path.Combine(_media.Root, "a.mp4"))); // absolute, inside
    }

    [Theory]
    [InlineData("../outside/c.mp4")]
    [InlineData("rel-out.mp4")]
    [InlineData("abs-out.mp4")]
    [InlineData("sub/out/c.mp4")]
    [InlineData("sub/up/../../../outside/c.mp4")] // ".." applies to the path as written, before links are followed
    [InlineData("/etc/passwd")]
    [InlineData("../../../../../../../../etc/passwd")]
    public void PathsThatLeadOut_Are403(string path)
    {
        var e = Assert.Throws<ApiError>(() => _media.Resolve(path));
        Assert.Equal(403, e.Status);
        Assert.Equal("path_not_allowed", e.Code);
    }

    [Theory]
    [InlineData("missing.mp4", "source_not_found")]
    [InlineData("dangling.mp4", "source_not_found")]
    [InlineData("loop1", "source_not_found")]
    [InlineData("sub", "invalid_source")]
    [InlineData("", "invalid_source")]
    [InlineData("a\0.mp4", "invalid_source")]
    public void NoSuchFile_Is400(string path, string code)
    {
        var e = Assert.Throws<ApiError>(() => _media.Resolve(path));
        Assert.Equal(400, e.Status);
        Assert.Equal(code, e.Code);
    }

    [Fact]
    public void TheList_HoldsWhatMayBeOpened_AndNoLinkThatLeadsOut()
    {
        var list = _media.List().Select(f => f.Path).ToList();
        Assert.Contains("a.mp4", list);
        Assert.Contains(Path.Combine("sub", "deeper", "b.mp4"), list);
        Assert.Contains("rel-in.mp4", list);
        Assert.DoesNotContain("rel-out.mp4", list);
        Assert.DoesNotContain("abs-out.mp4", list);
        Assert.DoesNotContain(list, p => p.Contains("out" + Path.DirectorySeparatorChar));
    }
}
