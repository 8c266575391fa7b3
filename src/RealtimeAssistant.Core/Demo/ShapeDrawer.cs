using OpenCvSharp;

namespace RealtimeAssistant.Demo;

/// <summary>Draws one object, anti-aliased with sub-pixel coordinates so tiny renders stay smooth.</summary>
internal static class ShapeDrawer
{
    private const int Shift = 4;            // OpenCV fixed-point bits
    private const double One = 1 << Shift;

    public static void Draw(Mat img, SceneObject o, double gain)
    {
        int w = img.Cols, h = img.Rows;
        double cx = o.X * w, cy = o.Y * h, r = o.Radius * Math.Min(w, h);
        var (b, g, rr) = o.Color.Bgr();
        var color = new Scalar(Math.Min(255, b * gain), Math.Min(255, g * gain), Math.Min(255, rr * gain));
        double a = o.Angle * Math.PI / 180;

        switch (o.Shape)
        {
            case Shape.Circle:
                Cv2.Circle(img, P(cx, cy), (int)(r * One), color, -1, LineTypes.AntiAlias, Shift);
                break;
            case Shape.Ring:
                // Thickness is whole pixels (not shifted): keep the hole visible even when tiny.
                int thick = Math.Max(2, (int)Math.Round(r * 0.42));
                Cv2.Circle(img, P(cx, cy), (int)((r - thick / 2.0) * One), color, thick, LineTypes.AntiAlias, Shift);
                break;
            case Shape.Square:
                Fill(img, Polygon(cx, cy, r * 0.9 * Math.Sqrt(2), 4, a + Math.PI / 4), color);
                break;
            case Shape.Triangle:
                // Centroid sits lower than the box centre; shift so the triangle looks centred.
                Fill(img, Polygon(cx, cy + r * 0.15, r * 1.15, 3, a - Math.PI / 2), color);
                break;
            case Shape.Star:
                Fill(img, Star(cx, cy, r * 1.15, r * 0.5, a - Math.PI / 2), color);
                break;
            case Shape.Cross:
                Fill(img, Cross(cx, cy, r, r * 0.36, a), color);
                break;
        }
    }

    private static Point P(double x, double y) => new((int)Math.Round(x * One), (int)Math.Round(y * One));

    private static void Fill(Mat img, Point[] pts, Scalar color) =>
        Cv2.FillPoly(img, [pts], color, LineTypes.AntiAlias, Shift);

    private static Point[] Polygon(double cx, double cy, double r, int n, double a0)
    {
        var pts = new Point[n];
        for (int i = 0; i < n; i++)
        {
            double a = a0 + 2 * Math.PI * i / n;
            pts[i] = P(cx + r * Math.Cos(a), cy + r * Math.Sin(a));
        }
        return pts;
    }

    private static Point[] Star(double cx, double cy, double outer, double inner, double a0)
    {
        var pts = new Point[10];
        for (int i = 0; i < 10; i++)
        {
            double a = a0 + Math.PI * i / 5, r = i % 2 == 0 ? outer : inner;
            pts[i] = P(cx + r * Math.Cos(a), cy + r * Math.Sin(a));
        }
        return pts;
    }

    // A plus sign as one 12-point outline: one polygon has no seams where the arms meet.
    private static Point[] Cross(double cx, double cy, double arm, double half, double a)
    {
        (double, double)[] local =
        [
            (half, -arm), (half, -half), (arm, -half), (arm, half), (half, half), (half, arm),
            (-half, arm), (-half, half), (-arm, half), (-arm, -half), (-half, -half), (-half, -arm),
        ];
        double cos = Math.Cos(a), sin = Math.Sin(a);
        return local.Select(p => P(cx + p.Item1 * cos - p.Item2 * sin, cy + p.Item1 * sin + p.Item2 * cos)).ToArray();
    }
}
