//! Between the codec's MQTT 5 properties and the core's protocol-neutral metadata.

use bytestring::ByteString;
use ferry_core::Properties as Meta;

use crate::codec::{Properties, Property};

/// The metadata of an incoming PUBLISH or will, forwarded unchanged.
pub(crate) fn properties_in(p: &Properties) -> Meta {
    Meta {
        payload_is_utf8: p.payload_format_indicator().map(|f| f == 1),
        content_type: p.content_type().map(|s| s.to_string()),
        response_topic: p.response_topic().map(|s| s.to_string()),
        correlation_data: p.correlation_data(),
        user_properties: p.user_properties().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

/// Write the metadata as MQTT 5 properties of an outgoing PUBLISH.
pub(crate) fn properties_out(meta: &Meta, p: &mut Properties) {
    if let Some(utf8) = meta.payload_is_utf8 {
        p.push(Property::PayloadFormatIndicator(u8::from(utf8)));
    }
    if let Some(ct) = &meta.content_type {
        p.push(Property::ContentType(ByteString::from(ct.as_str())));
    }
    if let Some(rt) = &meta.response_topic {
        p.push(Property::ResponseTopic(ByteString::from(rt.as_str())));
    }
    if let Some(cd) = &meta.correlation_data {
        p.push(Property::CorrelationData(cd.clone()));
    }
    for (k, v) in &meta.user_properties {
        p.push(Property::UserProperty(ByteString::from(k.as_str()), ByteString::from(v.as_str())));
    }
}
