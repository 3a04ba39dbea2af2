//! GGUF metadata values and their typed accessors.

/// One GGUF metadata value. Arrays may nest (an array of arrays), as the format allows.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    /// An unsigned 8-bit integer.
    U8(u8),
    /// A signed 8-bit integer.
    I8(i8),
    /// An unsigned 16-bit integer.
    U16(u16),
    /// A signed 16-bit integer.
    I16(i16),
    /// An unsigned 32-bit integer.
    U32(u32),
    /// A signed 32-bit integer.
    I32(i32),
    /// An unsigned 64-bit integer.
    U64(u64),
    /// A signed 64-bit integer.
    I64(i64),
    /// A 32-bit float.
    F32(f32),
    /// A 64-bit float.
    F64(f64),
    /// A boolean (one byte, 0 or 1).
    Bool(bool),
    /// A UTF-8 string.
    String(String),
    /// An array of values of one type.
    Array(Vec<GgufValue>),
}

/// The GGUF value type ids (`gguf_type` in ggml), as stored in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufValueType {
    /// Type id 0: unsigned 8-bit integer.
    U8 = 0,
    /// Type id 1: signed 8-bit integer.
    I8 = 1,
    /// Type id 2: unsigned 16-bit integer.
    U16 = 2,
    /// Type id 3: signed 16-bit integer.
    I16 = 3,
    /// Type id 4: unsigned 32-bit integer.
    U32 = 4,
    /// Type id 5: signed 32-bit integer.
    I32 = 5,
    /// Type id 6: 32-bit float.
    F32 = 6,
    /// Type id 7: boolean (one byte, 0 or 1).
    Bool = 7,
    /// Type id 8: UTF-8 string.
    String = 8,
    /// Type id 9: array of values of one type.
    Array = 9,
    /// Type id 10: unsigned 64-bit integer.
    U64 = 10,
    /// Type id 11: signed 64-bit integer.
    I64 = 11,
    /// Type id 12: 64-bit float.
    F64 = 12,
}

impl GgufValueType {
    /// The value type of a type id, `None` for ids outside `0..=12`.
    pub fn from_id(id: u32) -> Option<Self> {
        use GgufValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// The type id written in the file.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// The fewest bytes one value of this type occupies in a file (strings: the u64 length;
    /// arrays: item type + count). Used to bound counts by the bytes left before allocating.
    pub fn min_encoded_len(self) -> usize {
        use GgufValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 12,
        }
    }
}

impl GgufValue {
    /// The type of this value.
    pub fn value_type(&self) -> GgufValueType {
        match self {
            GgufValue::U8(_) => GgufValueType::U8,
            GgufValue::I8(_) => GgufValueType::I8,
            GgufValue::U16(_) => GgufValueType::U16,
            GgufValue::I16(_) => GgufValueType::I16,
            GgufValue::U32(_) => GgufValueType::U32,
            GgufValue::I32(_) => GgufValueType::I32,
            GgufValue::U64(_) => GgufValueType::U64,
            GgufValue::I64(_) => GgufValueType::I64,
            GgufValue::F32(_) => GgufValueType::F32,
            GgufValue::F64(_) => GgufValueType::F64,
            GgufValue::Bool(_) => GgufValueType::Bool,
            GgufValue::String(_) => GgufValueType::String,
            GgufValue::Array(_) => GgufValueType::Array,
        }
    }

    /// Any integer type holding a non-negative value, as `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v.into()),
            GgufValue::U16(v) => Some(v.into()),
            GgufValue::U32(v) => Some(v.into()),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer type whose value fits in `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            GgufValue::U8(v) => Some(v.into()),
            GgufValue::U16(v) => Some(v.into()),
            GgufValue::U32(v) => Some(v.into()),
            GgufValue::U64(v) => i64::try_from(v).ok(),
            GgufValue::I8(v) => Some(v.into()),
            GgufValue::I16(v) => Some(v.into()),
            GgufValue::I32(v) => Some(v.into()),
            GgufValue::I64(v) => Some(v),
            _ => None,
        }
    }

    /// Any numeric type (integers and floats) as `f64` (large 64-bit integers round).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v.into()),
            GgufValue::F64(v) => Some(v),
            GgufValue::U64(v) => Some(v as f64),
            GgufValue::I64(v) => Some(v as f64),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    /// Any numeric type as `f32` (rounded to the nearest f32).
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            GgufValue::F32(v) => Some(v),
            _ => self.as_f64().map(|v| v as f32),
        }
    }

    /// A boolean value.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// A string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// An array value (its items, of any types).
    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// An array whose items are all strings; `None` otherwise.
    pub fn as_str_array(&self) -> Option<Vec<&str>> {
        self.as_array()?.iter().map(GgufValue::as_str).collect()
    }

    /// An array whose items are all numeric, as `f32`; `None` otherwise.
    pub fn as_f32_array(&self) -> Option<Vec<f32>> {
        self.as_array()?.iter().map(GgufValue::as_f32).collect()
    }

    /// An array whose items are all integers fitting in `i64`; `None` otherwise.
    pub fn as_i64_array(&self) -> Option<Vec<i64>> {
        self.as_array()?.iter().map(GgufValue::as_i64).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_conversions() {
        assert_eq!(GgufValue::I32(-1).as_u64(), None);
        assert_eq!(GgufValue::I32(-1).as_i64(), Some(-1));
        assert_eq!(GgufValue::U64(u64::MAX).as_i64(), None);
        assert_eq!(GgufValue::U64(u64::MAX).as_u64(), Some(u64::MAX));
        assert_eq!(GgufValue::U8(7).as_f64(), Some(7.0));
        assert_eq!(GgufValue::F32(1.5).as_u64(), None);
        assert_eq!(GgufValue::F64(0.25).as_f32(), Some(0.25));
        assert_eq!(GgufValue::Bool(true).as_i64(), None);
        assert_eq!(GgufValue::String("x".into()).as_str(), Some("x"));
    }

    #[test]
    fn arrays() {
        let a = GgufValue::Array(vec![GgufValue::String("a".into()), GgufValue::String("b".into())]);
        assert_eq!(a.as_str_array(), Some(vec!["a", "b"]));
        assert_eq!(a.as_f32_array(), None);
        let m = GgufValue::Array(vec![GgufValue::String("a".into()), GgufValue::U8(1)]);
        assert_eq!(m.as_str_array(), None);
        let n = GgufValue::Array(vec![GgufValue::I32(-3), GgufValue::U8(1)]);
        assert_eq!(n.as_i64_array(), Some(vec![-3, 1]));
        assert_eq!(n.as_f32_array(), Some(vec![-3.0, 1.0]));
        assert_eq!(GgufValue::U8(1).as_array(), None);
    }

    #[test]
    fn type_ids_round_trip() {
        for id in 0..=12 {
            assert_eq!(GgufValueType::from_id(id).map(GgufValueType::id), Some(id));
        }
        assert_eq!(GgufValueType::from_id(13), None);
    }
}
